"""The registrar's server over real sessions (trust.md §8): enrolment with a
one-time code, renewal, revocation, the fresh list every interval, and every
refusal the same answer."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost.errors import CloseCode, ConfigError
from onionpost.proto import merkle
from onionpost.proto import messages as m
from onionpost.proto.registrar import EnrolmentCode
from onionpost.proto.session import PeerDecision
from onionpost.proto.trust import (
    Endorsement,
    EndorsementProof,
    Status,
    check_endorsement,
    open_checkpoint,
    open_delegation,
    open_revocations,
    stored_checkpoint,
    stored_endorsement,
)
from onionpost.proto.trust_session import RevocationBundle
from onionpost.registrar import RegistrarBook, init_registrar
from onionpost.testing.memory import Client, Peer
from tests.registrar._registrarkit import STORE_KEY, Registrar, make_agency, running_registrar

REFUSED = m.RgResult(0, m.RgCode.REFUSED, "refused")
DAY = 86_400


def refused(answer: object) -> bool:
    return isinstance(answer, m.RgResult) and answer == m.RgResult(
        answer.req, REFUSED.code, REFUSED.detail
    )


async def enrol(registrar: Registrar, peer: Peer, code: EnrolmentCode) -> tuple[Client, object]:
    client = await registrar.connect(peer)
    answer = await client.ask(lambda r: m.RgEnrol(r, code.token(), peer.client_auth_public))
    return client, answer


async def fetch(client: Client, size: int = 0) -> m.RgList:
    answer = await client.ask(lambda r: m.RgFetch(r, size))
    assert isinstance(answer, m.RgList), answer
    return answer


def verdict(registrar: Registrar, peer: Peer, proof: bytes, listed: m.RgList | None = None):  # type: ignore[no-untyped-def]
    revocations = None
    if listed is not None:
        revocations = open_revocations(
            registrar.anchor, listed.delegation, listed.revocations, now=registrar.now()
        ).value
    return check_endorsement(
        registrar.anchor,
        proof,
        address=str(peer.address),
        revocations=revocations,
        now=registrar.now(),
    )


async def test_an_endpoint_enrols_with_a_code(tmp_path: Path, clock: MockClock) -> None:
    async with running_registrar(tmp_path) as registrar:
        peer = Peer()
        code = await registrar.code("Field office 3", "Unit U")
        assert registrar.server.decide(peer.address) is PeerDecision.ACCEPT
        assert code.client_auth_public() in registrar.server.authorized_clients()
        client, answer = await enrol(registrar, peer, code)
        assert isinstance(answer, m.RgEndorsement), answer
        listed = await fetch(client)
        found = verdict(registrar, peer, answer.proof, listed)
        assert found.status is Status.ENDORSED
        assert found.endorsement is not None
        assert (found.endorsement.endpoint, found.endorsement.unit) == ("Field office 3", "Unit U")
        assert found.until == registrar.now() + 7 * DAY
        # The endorsement is in the log, the code spent, the endpoint's key authorized.
        (enrolled,) = registrar.server.endpoints()
        assert enrolled.address == str(peer.address)
        assert peer.client_auth_public in registrar.server.authorized_clients()
        assert registrar.book.open_codes(registrar.now()) == []
        # Strangers are refused at the handshake now; the used code's tor key
        # stays authorized until the code expires (so that the answer is not
        # cut off with the service's circuits, and can be asked for again).
        assert registrar.server.decide(Peer().address) is PeerDecision.REFUSE
        assert code.client_auth_public() in registrar.server.authorized_clients()
        # The same code again from the same endpoint (an answer lost): its proof.
        again = await client.ask(lambda r: m.RgEnrol(r, code.token(), peer.client_auth_public))
        assert isinstance(again, m.RgEndorsement)
        await trio.sleep(601)
        assert code.client_auth_public() not in registrar.server.authorized_clients()
        assert peer.client_auth_public in registrar.server.authorized_clients()
        assert (
            EndorsementProof.decode(again.proof).index
            == EndorsementProof.decode(answer.proof).index
        )


async def test_every_refusal_is_the_same_answer(tmp_path: Path, clock: MockClock) -> None:
    async with running_registrar(tmp_path) as registrar:
        first, second, stranger = Peer(), Peer(), Peer()
        used = await registrar.code()
        short = await registrar.code(expires=60)
        waiting = await registrar.code()  # keeps the door open for strangers
        _client, answer = await enrol(registrar, first, used)
        assert isinstance(answer, m.RgEndorsement)
        answers = []
        other = await registrar.connect(second)

        async def try_code(code: EnrolmentCode) -> object:
            return await other.ask(lambda r: m.RgEnrol(r, code.token(), second.client_auth_public))

        # A code used by another endpoint.
        answers.append(await try_code(used))
        # A code never issued.
        answers.append(await try_code(EnrolmentCode(registrar.peer.address, os.urandom(32))))
        # An expired code.
        await trio.sleep(61)
        answers.append(await try_code(short))
        # An endpoint never enrolled renewing, fetching.
        outsider = await registrar.connect(stranger)
        answers.append(await outsider.ask(m.RgRenew))
        answers.append(await outsider.ask(lambda r: m.RgFetch(r, 0)))
        assert all(refused(a) for a in answers), answers
        assert len({(a.code, a.detail) for a in answers}) == 1  # type: ignore[attr-defined]
        assert [e.address for e in registrar.server.endpoints()] == [str(first.address)]
        # The code still waiting works.
        assert isinstance(await try_code(waiting), m.RgEndorsement)


async def test_strangers_are_refused_at_the_handshake_when_no_code_waits(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_registrar(tmp_path) as registrar:
        assert registrar.server.decide(Peer().address) is PeerDecision.REFUSE
        code = await registrar.code(expires=60)
        assert registrar.server.decide(Peer().address) is PeerDecision.ACCEPT
        await trio.sleep(61)
        assert registrar.server.decide(Peer().address) is PeerDecision.REFUSE
        assert code.client_auth_public() not in registrar.server.authorized_clients()


async def test_renewal_before_expiry(tmp_path: Path, clock: MockClock) -> None:
    async with running_registrar(tmp_path, endorsement_days=9) as registrar:
        peer = Peer()
        client, answer = await enrol(registrar, peer, await registrar.code())
        assert isinstance(answer, m.RgEndorsement)
        first = EndorsementProof.decode(answer.proof)
        # More than a third of its life left: the same endorsement.
        await trio.sleep(5 * DAY)
        early = await client.ask(m.RgRenew)
        assert isinstance(early, m.RgEndorsement)
        assert EndorsementProof.decode(early.proof).index == first.index
        # Less than a third left (6 of 9 days gone): a new one, logged.
        await trio.sleep(1 * DAY + 1)
        renewed = await client.ask(m.RgRenew)
        assert isinstance(renewed, m.RgEndorsement)
        second = EndorsementProof.decode(renewed.proof)
        assert second.index > first.index
        listed = await fetch(client)
        found = verdict(registrar, peer, renewed.proof, listed)
        assert found.status is Status.ENDORSED
        assert found.until == registrar.now() + 9 * DAY


async def test_a_revocation_is_in_the_next_fetch_and_ends_renewal(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_registrar(tmp_path) as registrar:
        revoked, kept = Peer(), Peer()
        bad, answer = await enrol(registrar, revoked, await registrar.code())
        good, _ = await enrol(registrar, kept, await registrar.code())
        before = await fetch(good)
        listed = await registrar.server.revoke(str(revoked.address), "laptop stolen")
        assert listed.find(str(revoked.address)) is not None
        after = await fetch(good, stored_checkpoint(before.checkpoint).checkpoint.size)
        assert isinstance(answer, m.RgEndorsement)
        found = verdict(registrar, revoked, answer.proof, after)
        assert found.status is Status.REFUSED
        assert found.revoked is not None
        assert found.revoked.reason == "laptop stolen"
        # The revoked endpoint may renew nothing, and tor no longer lets it in.
        assert refused(await bad.ask(m.RgRenew))
        assert revoked.client_auth_public not in registrar.server.authorized_clients()
        assert registrar.server.decide(revoked.address) is PeerDecision.REFUSE
        with pytest.raises(ConfigError, match="revoked already"):
            await registrar.server.revoke(str(revoked.address), "again")
        # A revoked address is never enrolled again, even with a new code.
        assert refused((await enrol(registrar, revoked, await registrar.code()))[1])


async def test_a_fresh_list_every_interval_with_a_consistency_proof(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_registrar(tmp_path, refresh=60) as registrar:
        peer = Peer()
        client, _ = await enrol(registrar, peer, await registrar.code())
        first = await fetch(client)
        anchor = registrar.anchor
        key = open_delegation(anchor, first.delegation).value.key
        old = open_checkpoint(anchor, key, first.checkpoint).checkpoint
        serial = open_revocations(anchor, first.delegation, first.revocations, now=registrar.now())
        await trio.sleep(61)
        second = await fetch(client, old.size)
        listed = open_revocations(
            anchor, second.delegation, second.revocations, now=registrar.now()
        )
        assert listed.value.serial == serial.value.serial + 1
        assert registrar.now() - listed.value.issued_at <= 60
        new = open_checkpoint(anchor, key, second.checkpoint).checkpoint
        assert new.size > old.size
        merkle.verify_consistency(old.size, new.size, old.root, new.root, second.hashes())
        assert registrar.server.lists_signed >= 2


async def test_a_record_a_registrar_never_takes_ends_the_session(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_registrar(tmp_path) as registrar:
        peer = Peer()
        client, _ = await enrol(registrar, peer, await registrar.code())
        await client.channel.send(m.MbStatus(1))
        assert await client.ended() == CloseCode.BAD_MESSAGE
        # The registrar goes on.
        again = await registrar.connect(peer)
        assert isinstance(await again.ask(lambda r: m.RgFetch(r, 0)), m.RgList)


def test_the_book_outlives_the_process(tmp_path: Path) -> None:
    agency, _, signer = make_agency(tmp_path, 1_800_000_000)
    book = init_registrar(tmp_path / "registrar", agency, signer, STORE_KEY)
    peer = Peer()
    issued = book.new_code(Peer().address, "Desk 1", "", now=1_800_000_000, expires=600)
    proof = book.enrol(peer.address, issued.code.token(), bytes(32), now=1_800_000_010, days=7)
    assert proof is not None
    book.refresh(1_800_000_020, 900)
    again = RegistrarBook.open(tmp_path / "registrar", STORE_KEY)
    assert [e.address for e in again.endpoints()] == [str(peer.address)]
    assert again.log.root() == book.log.root()
    assert again.revocations == book.revocations
    with pytest.raises(ConfigError, match="does not open"):
        RegistrarBook.open(tmp_path / "registrar", bytes(32))
    # The agency directory signs nothing more: the log would fork.
    with pytest.raises(ConfigError, match="held by a registrar"):
        agency.endorse(signer, str(peer.address), endpoint="x", now=1_800_000_030)
    with pytest.raises(ConfigError, match="held by a registrar"):
        agency.revoke(signer, None, now=1_800_000_030)
    with pytest.raises(ConfigError):
        init_registrar(tmp_path / "other", agency, signer, STORE_KEY)


def test_no_list_is_exported_before_one_is_signed(tmp_path: Path) -> None:
    agency, _, signer = make_agency(tmp_path, 1_800_000_000)
    book = init_registrar(tmp_path / "registrar", agency, signer, STORE_KEY)
    with pytest.raises(ConfigError, match="no revocation list yet"):
        book.export_list()
    book.refresh(1_800_000_000, 900)
    assert (
        book.export_list().revocations == (tmp_path / "registrar" / "revocations.note").read_bytes()
    )


@pytest.mark.parametrize(
    ("endpoint", "unit", "expires"),
    [("", "", 600), ("x" * 65, "", 600), ("ok", "\x00", 600), ("ok", "", 0), ("ok", "", 8 * DAY)],
)
def test_bad_codes_are_not_made(tmp_path: Path, endpoint: str, unit: str, expires: int) -> None:
    agency, _, signer = make_agency(tmp_path, 1_800_000_000)
    book = init_registrar(tmp_path / "registrar", agency, signer, STORE_KEY)
    with pytest.raises(ConfigError):
        book.new_code(Peer().address, endpoint, unit, now=1_800_000_000, expires=expires)
    assert book.open_codes(1_800_000_000) == []


async def test_the_local_api_of_a_registrar(tmp_path: Path, clock: MockClock) -> None:
    from onionpost import api
    from onionpost.home import Secrets
    from onionpost.registrar import RegistrarBackend

    async with running_registrar(tmp_path) as registrar:
        secrets = Secrets.generate("registrar", now=registrar.now())
        backend = RegistrarBackend(
            secrets,
            registrar.server,
            tor_status=lambda: api.TorStatus(api.TorState.OK, ""),
        )
        assert api.TrustEnrol not in backend.handlers
        # (the QR code is drawn in a thread: virtual time may jump meanwhile)
        issued = await backend.code(api.RegistrarCode("Desk 7", "Ops", 86_400))
        assert (issued.endpoint, issued.unit) == ("Desk 7", "Ops")
        assert issued.qr
        code = EnrolmentCode.parse(issued.code)
        peer = Peer()
        _, answer = await enrol(registrar, peer, code)
        assert isinstance(answer, m.RgEndorsement)
        state = await backend.list(api.RegistrarList())
        held = registrar.book.revocations
        assert held is not None
        assert (state.agency, state.serial, state.log_size) == (
            "acme",
            held.serial,
            registrar.book.log.size,
        )
        (endpoint,) = state.endpoints
        assert (endpoint.address, endpoint.endpoint, endpoint.revoked) == (
            str(peer.address),
            "Desk 7",
            False,
        )
        revoked = await backend.revoke(api.RegistrarRevoke(str(peer.address), "lost"))
        assert revoked.serial == held.serial + 1
        assert [(r.address, r.reason) for r in revoked.revoked] == [(str(peer.address), "lost")]
        assert revoked.endpoints[0].revoked
        with pytest.raises(ConfigError):
            await backend.revoke(api.RegistrarRevoke("not-an-address", ""))
        # An address this registrar never enrolled: refused, nothing signed,
        # unless forced (one the agency endorsed offline).
        stranger = str(Peer().address)
        with pytest.raises(ConfigError, match=r"never enrolled with this registrar.*--force"):
            await backend.revoke(api.RegistrarRevoke(stranger, "typo"))
        assert (await backend.list(api.RegistrarList())).serial == revoked.serial
        forced = await backend.revoke(api.RegistrarRevoke(stranger, "offline one", force=True))
        assert forced.serial == revoked.serial + 1
        assert stranger in [r.address for r in forced.revoked]
        # The list as a file: the bundle an endpoint imports, of the latest list.
        exported = await backend.export_list(api.RegistrarExportList())
        assert (exported.serial, exported.revoked) == (forced.serial, 2)
        bundle = RevocationBundle.decode(base64.b64decode(exported.bundle))
        listed = open_revocations(
            registrar.anchor, bundle.delegation, bundle.revocations, now=registrar.now()
        ).value
        assert listed.serial == forced.serial
        key = open_delegation(registrar.anchor, bundle.delegation).value.key
        assert open_checkpoint(registrar.anchor, key, bundle.checkpoint).checkpoint.size == (
            registrar.book.log.size
        )
        backend.close()


@pytest.mark.parametrize(
    "record",
    [b"\xc1", b"\x93\x30\x01", bytes(400), b"\x92\x35" + b"\xc4\x00"],
    ids=["not-msgpack", "short-enrol", "zeros", "short-list"],
)
async def test_a_malformed_record_ends_that_session_only(
    tmp_path: Path, clock: MockClock, record: bytes
) -> None:
    async with running_registrar(tmp_path) as registrar:
        peer = Peer()
        client, _ = await enrol(registrar, peer, await registrar.code())
        await client.write_record(record)
        assert await client.ended() in {CloseCode.BAD_MESSAGE, None}
        again = await registrar.connect(peer)
        assert isinstance(await again.ask(lambda r: m.RgFetch(r, 0)), m.RgList)
        assert [e.address for e in registrar.server.endpoints()] == [str(peer.address)]


def _book(tmp_path: Path) -> RegistrarBook:
    agency, _, signer = make_agency(tmp_path, T0)
    return init_registrar(tmp_path / "registrar", agency, signer, STORE_KEY)


T0 = 1_800_000_000


def _enrolled(book: RegistrarBook, peer: Peer, code: EnrolmentCode, now: int) -> Endorsement:
    data = book.enrol(peer.address, code.token(), peer.client_auth_public, now=now, days=7)
    assert data is not None
    return stored_endorsement(EndorsementProof.decode(data).endorsement)


def test_a_code_with_replaces_moves_an_enrolled_endpoint(tmp_path: Path) -> None:
    """trust.md §6, §8.2: the home that enrols with a code of ``--replaces OLD``
    is endorsed, in the log, as replacing OLD, with OLD's name and unit unless
    the code names others; its renewals say so too, and the book keeps it."""
    book = _book(tmp_path)
    old, new = Peer(), Peer()
    first = book.new_code(Peer().address, "Field office 3", "Unit U", now=T0, expires=600)
    assert _enrolled(book, old, first.code, T0 + 1).replaces == ""
    moving = book.new_code(
        Peer().address, "", "", now=T0 + 2, expires=600, replaces=str(old.address)
    )
    assert (moving.endpoint, moving.unit, moving.replaces) == (
        "Field office 3",
        "Unit U",
        str(old.address),
    )
    # The old address itself cannot use it (a move to where it is).
    assert book.enrol(old.address, moving.code.token(), bytes(32), now=T0 + 3, days=7) is None
    endorsed = _enrolled(book, new, moving.code, T0 + 3)
    assert (endorsed.address, endorsed.replaces) == (str(new.address), str(old.address))
    assert (endorsed.endpoint, endorsed.unit) == ("Field office 3", "Unit U")
    # In the agency's log, as the last statement.
    (at,) = [e for e in book.endpoints() if e.address == str(new.address)]
    assert at.replaces == str(old.address)
    assert stored_endorsement(book.directory.statement(at.index)) == endorsed
    assert at.index == book.log.size - 1
    # Both stay enrolled: the old home announces the move from its address.
    assert {e.address for e in book.endpoints()} == {str(old.address), str(new.address)}
    # A renewal keeps the move, so the new home's bundle is a proof for 'trust rotate'.
    renewed = book.renew(new.address, now=T0 + 6 * DAY, days=7)
    assert renewed is not None
    assert stored_endorsement(EndorsementProof.decode(renewed).endorsement).replaces == str(
        old.address
    )
    # Named otherwise: the code's name and unit.
    other = book.new_code(
        Peer().address, "Desk 9", "", now=T0 + 7, expires=600, replaces=str(old.address)
    )
    assert (other.endpoint, other.unit) == ("Desk 9", "")
    again = RegistrarBook.open(tmp_path / "registrar", STORE_KEY)
    assert {e.address: e.replaces for e in again.endpoints()} == {
        str(old.address): "",
        str(new.address): str(old.address),
    }


def test_a_state_file_from_before_moves_still_opens(tmp_path: Path) -> None:
    book = _book(tmp_path)
    peer = Peer()
    issued = book.new_code(Peer().address, "Desk 1", "", now=T0, expires=600)
    _enrolled(book, peer, issued.code, T0 + 1)
    state = tmp_path / "registrar" / "registrar.json"
    data = json.loads(state.read_text())
    for record in (*data["codes"], *data["endpoints"]):
        del record["replaces"]
    state.write_text(json.dumps(data))
    (enrolled,) = RegistrarBook.open(tmp_path / "registrar", STORE_KEY).endpoints()
    assert (enrolled.address, enrolled.replaces) == (str(peer.address), "")


def test_a_move_from_an_address_not_enrolled_here_or_revoked_is_refused(tmp_path: Path) -> None:
    book = _book(tmp_path)
    old = Peer()
    issued = book.new_code(Peer().address, "Desk 1", "", now=T0, expires=600)
    _enrolled(book, old, issued.code, T0 + 1)
    bad = [
        ("not-an-address", "not an onion address"),
        (str(Peer().address), "no endpoint this registrar enrolled"),
        ("", "an endpoint's name"),  # no move, no name: nothing to endorse
    ]
    for replaces, problem in bad:
        with pytest.raises(ConfigError, match=problem):
            book.new_code(Peer().address, "", "", now=T0 + 2, expires=600, replaces=replaces)
    assert book.open_codes(T0 + 2) == []
    # Revoked: moving away from it is what a compromise needs, said explicitly.
    book.revoke(str(old.address), "laptop stolen", now=T0 + 3)
    with pytest.raises(ConfigError, match="--from-revoked"):
        book.new_code(Peer().address, "", "", now=T0 + 4, expires=600, replaces=str(old.address))
    assert book.open_codes(T0 + 4) == []
    moving = book.new_code(
        Peer().address,
        "",
        "",
        now=T0 + 4,
        expires=600,
        replaces=str(old.address),
        from_revoked=True,
    )
    new = Peer()
    assert _enrolled(book, new, moving.code, T0 + 5).replaces == str(old.address)


def test_a_move_code_whose_old_address_left_the_book_is_refused(tmp_path: Path) -> None:
    """The check at enrolment: OLD must still be an endpoint here."""
    book = _book(tmp_path)
    old = Peer()
    issued = book.new_code(Peer().address, "Desk 1", "", now=T0, expires=600)
    _enrolled(book, old, issued.code, T0 + 1)
    moving = book.new_code(
        Peer().address, "", "", now=T0 + 2, expires=600, replaces=str(old.address)
    )
    book._endpoints = {}  # as a state file edited by hand would leave it
    size = book.log.size
    assert book.enrol(Peer().address, moving.code.token(), bytes(32), now=T0 + 3, days=7) is None
    assert book.log.size == size  # nothing endorsed
