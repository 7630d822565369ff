"""A registrar that outlives its delegation (trust.md §8.1): the root's new
delegation of the same issuing key (``trust delegate``) taken by the book and
by a running registrar, every refusal leaving everything as it was, the
endorsements it signs never valid past the delegation's end, and the end
said in ``registrar status`` and in the log."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.cli._registrar_cmd import _summary
from onionpost.errors import ConfigError
from onionpost.home import AgencyDirectory, Secrets
from onionpost.limits import MAX_DELEGATION_LIFETIME
from onionpost.proto import messages as m
from onionpost.proto.registrar import DelegationNotice, delegation_notice, endorsement_until
from onionpost.proto.trust import (
    Delegation,
    EndorsementProof,
    HybridSigner,
    Status,
    check_endorsement,
    issue,
    open_checkpoint,
    stored_endorsement,
)
from onionpost.registrar import RegistrarBackend, RegistrarBook, init_registrar, registrar_state
from onionpost.testing.memory import Peer
from tests.registrar._registrarkit import PASS, STORE_KEY, make_agency, running_registrar

DAY = 86_400
T0 = 1_800_000_000


def _book(tmp_path: Path, lifetime: int) -> tuple[AgencyDirectory, RegistrarBook]:
    agency, _, signer = make_agency(tmp_path, T0, lifetime=lifetime)
    return agency, init_registrar(tmp_path / "registrar", agency, signer, STORE_KEY)


def _enrol(book: RegistrarBook, peer: Peer, now: int, days: int = 7) -> bytes:
    issued = book.new_code(Peer().address, "Desk 1", "Ops", now=now, expires=600)
    proof = book.enrol(
        peer.address, issued.code.token(), peer.client_auth_public, now=now, days=days
    )
    assert proof is not None
    return proof


def _stored(book: RegistrarBook) -> dict[str, bytes]:
    """Every file of the registrar's directory, by name."""
    root = book.directory.path
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _verdict(book: RegistrarBook, peer: Peer, proof: bytes, now: int) -> tuple[Status, int | None]:
    found = check_endorsement(
        book.directory.anchor(),
        proof,
        address=str(peer.address),
        revocations=book.revocations,
        now=now,
    )
    return found.status, found.until


def test_the_root_delegates_anew_and_the_book_takes_it(tmp_path: Path) -> None:
    agency, book = _book(tmp_path, 30 * DAY)
    first, late = Peer(), Peer()
    _enrol(book, first, T0 + 1)
    # Endorsed under the first delegation a day before the new one comes.
    old_proof = _enrol(book, late, T0 + 19 * DAY)
    size = book.log.size
    codes, endpoints = book.open_codes(T0 + 19 * DAY), book.endpoints()
    now = T0 + 20 * DAY
    data = agency.delegate(agency.root(PASS), now=now)
    # The agency directory, handed over, keeps it as its latest and logs nothing.
    assert agency.delegation() == data
    assert len(agency.statements()) == 1
    taken = book.install_delegation(data, now=now)
    assert (taken.not_before, taken.not_after) == (now, now + MAX_DELEGATION_LIFETIME)
    assert taken.key == book.signer.public
    assert book.delegation == taken
    # Logged, with a checkpoint of the whole log; nothing else changed.
    assert book.log.size == size + 1
    assert book.directory.statement(size) == data
    assert book.directory.delegation() == data
    checkpoint = open_checkpoint(
        book.directory.anchor(), taken.key, (book.directory.path / "checkpoint.note").read_bytes()
    ).checkpoint
    assert (checkpoint.size, checkpoint.root) == (book.log.size, book.log.root())
    assert (book.open_codes(T0 + 19 * DAY), book.endpoints()) == (codes, endpoints)
    # New endorsements, renewals and lists carry it.
    book.refresh(now, 900)
    renewed = book.renew(first.address, now=now, days=7)
    assert renewed is not None
    assert EndorsementProof.decode(renewed).delegation == data
    assert _verdict(book, first, renewed, now) == (Status.ENDORSED, now + 7 * DAY)
    served = book.fetch(first.address, 0)
    assert served is not None
    assert served.bundle.delegation == data
    # What was issued under the first one is valid still, as issued.
    assert EndorsementProof.decode(old_proof).delegation != data
    book.refresh(now + DAY, 900)
    assert _verdict(book, late, old_proof, now + DAY) == (Status.ENDORSED, T0 + 26 * DAY)
    # The registrar restarted holds the new one.
    again = RegistrarBook.open(tmp_path / "registrar", STORE_KEY)
    assert again.delegation == taken
    assert again.log.root() == book.log.root()


def test_endorsements_end_with_the_delegation(tmp_path: Path) -> None:
    _, book = _book(tmp_path, 10 * DAY)
    end = T0 + 10 * DAY
    peer = Peer()
    # Enrolled three days before the end: endorsed until the end, not for 7 days.
    proof = _enrol(book, peer, end - 3 * DAY)
    endorsed = stored_endorsement(EndorsementProof.decode(proof).endorsement)
    assert (endorsed.valid_from, endorsed.valid_until) == (end - 3 * DAY, end)
    (enrolled,) = book.endpoints()
    assert enrolled.valid_until == end
    # Due for renewal, but a new one would end no later: the same one, nothing logged.
    size = book.log.size
    again = book.renew(peer.address, now=end - DAY // 2, days=7)
    assert again is not None
    assert EndorsementProof.decode(again).index == EndorsementProof.decode(proof).index
    assert book.log.size == size
    # Once it has ended: nothing is endorsed, renewed or listed, and said why.
    for attempt in (
        lambda: book.renew(peer.address, now=end, days=7),
        lambda: _enrol(book, Peer(), end + 1),
        lambda: book.refresh(end + 1, 900),
    ):
        with pytest.raises(ConfigError, match="delegation"):
            attempt()
    assert book.log.size == size
    # The pure rule, and the offline tool: refused, saying what to do.
    assert endorsement_until(end - DAY, 7 * DAY, book.delegation) == end
    assert endorsement_until(end - 9 * DAY, 7 * DAY, book.delegation) == end - 2 * DAY
    other, _ = AgencyDirectory.create(tmp_path / "other", "other", PASS, now=T0, lifetime=DAY)
    signer = other.issuer(PASS)
    with pytest.raises(ConfigError, match=r"ends .*fewer --days.*trust delegate"):
        other.endorse(signer, str(peer.address), endpoint="x", now=T0, days=2)
    with pytest.raises(ConfigError, match=r"ended .*trust delegate"):
        other.endorse(signer, str(peer.address), endpoint="x", now=T0 + 2 * DAY, days=1)


def test_the_notice_of_the_delegations_end() -> None:
    assert delegation_notice(T0 + 15 * DAY, T0) is DelegationNotice.FAR
    assert delegation_notice(T0 + 14 * DAY, T0) is DelegationNotice.ENDING
    assert delegation_notice(T0 + 1, T0) is DelegationNotice.ENDING
    assert delegation_notice(T0, T0) is DelegationNotice.ENDED


def _delegation(signer: HybridSigner | object, held: Delegation, **change: int | bytes) -> bytes:
    fields = {
        "ed25519": held.ed25519,
        "mldsa65": held.mldsa65,
        "not_before": held.not_before,
        "not_after": held.not_after,
        **change,
    }
    new = Delegation(held.agency, held.label, **fields)  # type: ignore[arg-type]
    return issue(signer, new)  # type: ignore[arg-type]


def _refusals(
    tmp_path: Path, agency: AgencyDirectory, book: RegistrarBook, now: int
) -> list[tuple[bytes, str]]:
    held = book.delegation
    root = agency.root(PASS)
    # Another agency's root, of the same name: not ours.
    stranger, _ = AgencyDirectory.create(tmp_path / "stranger", "acme", PASS, now=T0, mldsa=False)
    wrong_root = stranger.root(PASS)
    later = {"not_before": now, "not_after": now + 60 * DAY}
    other_key = HybridSigner.generate("acme/issuing/a", mldsa=False).public
    note = (book.directory.path / "checkpoint.note").read_bytes()
    return [
        (_delegation(wrong_root, held, **later), "not signed by the root of acme"),
        (_delegation(root, held, ed25519=other_key.ed25519, **later), "another issuing key"),
        (_delegation(root, held), "not after the one held"),
        (
            _delegation(root, held, not_before=now - DAY, not_after=held.not_after - DAY),
            "not after the one held",
        ),
        (
            _delegation(root, held, not_before=now + DAY, not_after=now + 60 * DAY),
            "valid only from .* check the clocks",
        ),
        (b"", "not a delegation"),
        (b"onionpost-trust/v1 delegation\nnot base64\n", "not a delegation"),
        (note, "not a delegation"),
        (bytes(range(256)) * 4, "not a delegation"),
    ]


def test_a_bad_delegation_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    agency, book = _book(tmp_path, 30 * DAY)
    _enrol(book, Peer(), T0 + 1)
    book.refresh(T0 + 2, 900)
    now = T0 + 20 * DAY
    before, held = _stored(book), book.delegation
    for data, problem in _refusals(tmp_path, agency, book, now):
        with pytest.raises(ConfigError, match=problem):
            book.install_delegation(data, now=now)
        assert _stored(book) == before, problem
        assert book.delegation == held
    # One that ended already, at a registrar whose own ended too.
    root = agency.root(PASS)
    ended = _delegation(root, held, not_before=T0 + 5 * DAY, not_after=T0 + 35 * DAY)
    with pytest.raises(ConfigError, match="ended"):
        book.install_delegation(ended, now=T0 + 40 * DAY)
    assert _stored(book) == before


def test_the_root_refuses_a_delegation_that_is_not_longer_lived(tmp_path: Path) -> None:
    agency, _ = _book(tmp_path, 30 * DAY)
    root = agency.root(PASS)
    held = agency.delegation()
    with pytest.raises(ConfigError, match="end later than the one held"):
        agency.delegate(root, now=T0 + DAY, lifetime=28 * DAY)
    with pytest.raises(ConfigError, match="1 to 90 days"):
        agency.delegate(root, now=T0 + DAY, lifetime=MAX_DELEGATION_LIFETIME + 1)
    with pytest.raises(ConfigError, match="not this agency's root"):
        agency.delegate(agency.issuer(PASS), now=T0 + DAY)
    assert agency.delegation() == held


def test_an_agency_without_a_registrar_logs_its_new_delegation(tmp_path: Path) -> None:
    agency, _ = AgencyDirectory.create(tmp_path / "acme", "acme", PASS, now=T0, lifetime=DAY)
    signer = agency.issuer(PASS)
    with pytest.raises(ConfigError, match="issuing key signs the log"):
        agency.delegate(agency.root(PASS), now=T0 + 3600)
    data = agency.delegate(agency.root(PASS), now=T0 + 3600, issuer=signer)
    assert agency.statements()[-1] == data
    assert agency.delegation() == data
    # 'trust endorse' signs under it past the first one's end.
    proof = agency.endorse(signer, str(Peer().address), endpoint="x", now=T0 + 2 * DAY, days=7)
    assert proof.delegation == data
    assert proof.index == 2


async def test_a_running_registrar_warns_then_takes_a_new_delegation(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost.registrar")
    async with running_registrar(tmp_path, lifetime=15 * DAY, refresh=3600) as registrar:
        server, book = registrar.server, registrar.book
        secrets = Secrets.generate("registrar", now=registrar.now())
        backend = RegistrarBackend(
            secrets, server, tor_status=lambda: api.TorStatus(api.TorState.OK, "")
        )
        first_end = book.delegation.not_after
        peer = Peer()
        code = await registrar.code()
        client = await registrar.connect(peer)
        answer = await client.ask(lambda r: m.RgEnrol(r, code.token(), peer.client_auth_public))
        assert isinstance(answer, m.RgEndorsement)

        def said(event: str) -> list[str]:
            return [r.getMessage() for r in caplog.records if f"event={event}" in r.getMessage()]

        def status_lines() -> list[str]:
            state = registrar_state(book, peer.address, refresh=3600)
            return _summary(state, now_ms=registrar.now() * 1000)

        assert said("delegation_ending") == []
        assert len(status_lines()) == 4
        # Fourteen days before the end it is said, once a day.
        await trio.sleep(2 * DAY + 60)
        warned = said("delegation_ending")
        assert len(warned) == 2, warned
        assert "days_left=14" in warned[0]
        assert "onionpost trust delegate" in warned[0]
        *_, fifth = status_lines()
        assert fifth.startswith("delegation ends ")
        assert "(in 12 days)" in fifth
        assert "onionpost registrar delegation FILE" in fifth

        # Refused through the local API: said why, the registrar serves on.
        before = _stored(book)
        for data, problem in _refusals(tmp_path, registrar.agency, book, registrar.now()):
            with pytest.raises(ConfigError, match=problem):
                await backend.delegation(api.RegistrarDelegation(base64.b64encode(data).decode()))
            assert _stored(book) == before
        with pytest.raises(ConfigError, match="base64"):
            await backend.delegation(api.RegistrarDelegation("not base64!"))
        assert isinstance(await client.ask(lambda r: m.RgFetch(r, 0)), m.RgList)

        # The root's new one, taken running.
        now = registrar.now()
        data = registrar.agency.delegate(registrar.agency.root(PASS), now=now)
        state = await backend.delegation(api.RegistrarDelegation(base64.b64encode(data).decode()))
        assert state.delegation_until == now + MAX_DELEGATION_LIFETIME
        assert state.log_size == book.log.size
        assert len(said("delegation_renewed")) == 1
        assert len(status_lines()) == 4
        # Renewed when due: under the new delegation, endorsed past the first's end.
        await trio.sleep(8 * DAY)  # the first endorsement (7 days) has ended
        renewed = await client.ask(m.RgRenew)
        assert isinstance(renewed, m.RgEndorsement)
        assert EndorsementProof.decode(renewed.proof).delegation == data
        await trio.sleep(first_end - registrar.now() + 60)
        listed = await client.ask(lambda r: m.RgFetch(r, 0))
        assert isinstance(listed, m.RgList)
        assert listed.delegation == data
        status, until = _verdict(book, peer, renewed.proof, registrar.now())
        assert status is Status.ENDORSED
        assert until is not None
        assert until > first_end
        assert len(said("delegation_ending")) == 2  # nothing more once it was renewed
        assert said("list_sign_failed") == []
        backend.close()


async def test_a_registrar_whose_delegation_ended_says_so_and_signs_nothing(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost.registrar")
    async with running_registrar(tmp_path, lifetime=DAY, refresh=600) as registrar:
        server, book = registrar.server, registrar.book
        peer = Peer()
        await trio.sleep(DAY + 60)
        signed = server.lists_signed
        await trio.sleep(DAY)
        # Said once a day; no list signed meanwhile, and no warning every retry.
        ended = [
            r.getMessage() for r in caplog.records if "event=delegation_ended" in r.getMessage()
        ]
        assert len(ended) == 2, ended
        assert "signs nothing endpoints accept" in ended[0]
        assert server.lists_signed == signed
        assert not [r for r in caplog.records if "list_sign_failed" in r.getMessage()]
        *_, fifth = _summary(
            registrar_state(book, peer.address, refresh=600), now_ms=registrar.now() * 1000
        )
        assert fifth.startswith("delegation ENDED ")
        # An enrolment is refused, the one answer to every refusal.
        code = await registrar.code()
        client = await registrar.connect(peer)
        answer = await client.ask(lambda r: m.RgEnrol(r, code.token(), peer.client_auth_public))
        assert isinstance(answer, m.RgResult)
        assert answer.code == m.RgCode.REFUSED
        # A new delegation, and lists are signed again within a retry.
        data = registrar.agency.delegate(registrar.agency.root(PASS), now=registrar.now())
        await server.install_delegation(data)
        await trio.sleep(61)
        assert server.lists_signed > signed
        answer = await client.ask(lambda r: m.RgEnrol(r, code.token(), peer.client_auth_public))
        assert isinstance(answer, m.RgEndorsement)
        assert EndorsementProof.decode(answer.proof).delegation == data
