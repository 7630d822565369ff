"""The mailbox's session server over real sessions, a real store, and virtual time.

Each test runs a :class:`MailboxServer` behind ``serve()`` on in-memory
streams (``onionpost.testing.memory``) and talks to it as owners, contacts and strangers
do: handshakes, records, answers. Time is trio's MockClock.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import msgpack
import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.client import open_client
from onionpost.errors import CloseCode, TransportError
from onionpost.home import Config
from onionpost.home._config import MAX_MAILBOX_ENVELOPE
from onionpost.host import serve_api
from onionpost.limits import MAX_UNUSED_PREKEYS_PER_CONTACT as LIMIT
from onionpost.mailbox import MailboxBackend, MailboxPolicy
from onionpost.mailbox._server import (
    CODE_REFUSED_DETAIL,
    HOUSEKEEPING_INTERVAL,
    MAX_SESSIONS_PER_PEER,
)
from onionpost.proto import envelope as env
from onionpost.proto import messages as m
from onionpost.proto.pairing import SetupCode
from onionpost.proto.session import PeerDecision
from onionpost.store import MailboxStore
from onionpost.testing.doubles import short_tmpdir
from onionpost.testing.memory import KEY, Client, Mailbox, Peer, envelope_bytes, running_mailbox

NOT_FOUND = m.MbResult(0, m.MbCode.NOT_FOUND, "not found")


def same_answer(answer: object) -> m.MbResult:
    """The answer with req 0, to compare answers to different requests."""
    assert isinstance(answer, m.MbResult), answer
    return dataclasses.replace(answer, req=0)


async def owner_and_contact(mailbox: Mailbox) -> tuple[Peer, Client, Peer, Client]:
    owner, owned = await mailbox.owner()
    contact = Peer()
    assert (await owned.register(contact)).code == m.MbCode.OK
    return owner, owned, contact, await mailbox.connect(contact)


def test_the_policy_follows_the_config() -> None:
    assert MAX_MAILBOX_ENVELOPE == env.MAX_ENVELOPE
    policy = MailboxPolicy.from_config(
        Config(
            mailbox_retention=60.0,
            mailbox_max_envelope=5000,
            mailbox_max_bytes_per_owner=7000,
            mailbox_max_envelopes_per_owner=9,
            mailbox_max_contacts_per_owner=3,
        )
    )
    assert (policy.retention, policy.max_envelope) == (60.0, 5000)
    assert (policy.max_bytes_per_owner, policy.max_envelopes_per_owner) == (7000, 9)
    assert policy.max_contacts_per_owner == 3
    assert MailboxPolicy.from_config(Config()) == MailboxPolicy()


# -- who may connect ----------------------------------------------------------------------


async def test_a_stranger_is_refused_at_the_handshake(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        stranger = Peer()
        assert mailbox.server.decide(stranger.address) is PeerDecision.REFUSE
        client = await mailbox.connect(stranger)
        # The responder refused after the third message: the stream just ends.
        with pytest.raises(TransportError):
            await client.channel.receive()
        # While a setup code waits, anyone may come in to pair (or do nothing else).
        code = await mailbox.code(expires_s=600)
        assert mailbox.server.decide(stranger.address) is PeerDecision.ACCEPT
        assert code.client_auth_public() in mailbox.server.authorized_clients()
        client = await mailbox.connect(stranger)
        assert same_answer(await client.status()) == NOT_FOUND
        assert (await client.pair(code, stranger)).code == m.MbCode.OK
        # The code is used: the next stranger is refused again; the owner is in.
        assert mailbox.server.decide(Peer().address) is PeerDecision.REFUSE
        assert mailbox.server.decide(stranger.address) is PeerDecision.ACCEPT
        assert stranger.client_auth_public in mailbox.server.authorized_clients()


async def test_authorized_clients_follow_every_change(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        code = await mailbox.code(expires_s=600)
        owner, owned = await mailbox.owner()
        contact = Peer()
        await owned.register(contact)
        await trio.sleep(1)  # the publisher tells tor
        keys = mailbox.changes[-1]
        assert keys == mailbox.server.authorized_clients()
        assert {owner.client_auth_public, contact.client_auth_public, code.client_auth_public()}
        assert set(keys) >= {owner.client_auth_public, contact.client_auth_public}
        assert code.client_auth_public() in keys
        assert (await owned.ask(lambda r: m.MbDeregister(r, contact.key))).code == m.MbCode.OK
        await trio.sleep(1)
        assert contact.client_auth_public not in mailbox.changes[-1]
        # Codes leave when they expire (housekeeping), used or not.
        await trio.sleep(3600 + HOUSEKEEPING_INTERVAL)
        assert mailbox.changes[-1] == [owner.client_auth_public]


# -- pairing ------------------------------------------------------------------------------


async def test_a_used_code_is_refused_to_another_and_accepted_again_from_its_owner(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        code = await mailbox.code()
        alice, mallory = Peer(), Peer()
        first = await mailbox.connect(alice)
        assert (await first.pair(code, alice)).code == m.MbCode.OK
        # Alice crashed before she stored the pairing: the same code, a new session.
        again = await mailbox.connect(alice)
        assert (await again.pair(code, alice)).code == m.MbCode.OK
        await mailbox.code()  # so that mallory gets past the handshake at all
        other = await mailbox.connect(mallory)
        refused = await other.pair(code, mallory)
        assert (refused.code, refused.detail) == (m.MbCode.CODE_REFUSED, CODE_REFUSED_DETAIL)
        assert same_answer(await other.status()) == NOT_FOUND
        usage = await again.status()
        assert isinstance(usage, m.MbUsage)


async def test_an_expired_or_unknown_code_is_refused(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        code = await mailbox.code(expires_s=60)
        await mailbox.code(expires_s=3600)
        peer = Peer()
        client = await mailbox.connect(peer)
        await trio.sleep(61)
        expired = await client.pair(code, peer)
        assert (expired.code, expired.detail) == (m.MbCode.CODE_REFUSED, CODE_REFUSED_DETAIL)
        unknown = await client.pair(SetupCode.generate(mailbox.address), peer)
        assert same_answer(unknown) == same_answer(expired)


# -- what a contact may not see -----------------------------------------------------------


async def test_a_contact_gets_what_a_missing_owner_gets(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        _, _, _, client = await owner_and_contact(mailbox)
        other_owner, other = await mailbox.owner()
        await other.ask(
            lambda r: m.MbPrekeys(
                r,
                (
                    env.generate_prekey(
                        other_owner.identity,
                        env.PrekeyKind.LAST_RESORT,
                        now=mailbox.now_s(),
                        lifetime=600,
                    ).public.to_bytes(),
                ),
            )
        )
        nobody = Peer()
        envelope = envelope_bytes()
        requests = [
            lambda r: m.MbFetch(r, 0),
            lambda r: m.MbDelete(r, (bytes(16),)),
            m.MbStatus,
            m.MbWipe,
            lambda r: m.MbRegister(r, nobody.key, nobody.client_auth_public),
            lambda r: m.MbDeregister(r, nobody.key),
            # An owner who did not register us, and an owner that does not exist.
            lambda r: m.MbGetPrekey(r, other_owner.key),
            lambda r: m.MbGetPrekey(r, nobody.key),
            lambda r: m.MbDeposit(r, other_owner.key, envelope),
            lambda r: m.MbDeposit(r, nobody.key, envelope),
        ]
        answers = [await client.ask(make, req=7) for make in requests]
        encoded = {m.encode(a) for a in answers}
        assert encoded == {m.encode(dataclasses.replace(NOT_FOUND, req=7))}
        # Nothing happened: the other owner still holds its prekey and nothing else.
        status = await other.status()
        assert (status.envelopes, status.last_resort_not_after > 0) == (0, True)


# -- deposits ------------------------------------------------------------------------------


async def test_deposit_quotas_count_and_bytes(tmp_path: Path, clock: MockClock) -> None:
    limits = {"max_envelopes_per_contact": 2, "max_bytes_per_contact": 5000}
    async with running_mailbox(tmp_path, **limits) as mailbox:
        owner, owned, _, by_carol = await owner_and_contact(mailbox)
        dave = Peer()
        await owned.register(dave)
        by_dave = await mailbox.connect(dave)
        detail = "quota exceeded: at most 2 envelopes / 5000 bytes from one contact"
        for _ in range(2):
            assert (await by_carol.deposit(owner, envelope_bytes(1500))).code == m.MbCode.OK
        third = await by_carol.deposit(owner, envelope_bytes(1500))
        assert (third.code, third.detail) == (m.MbCode.QUOTA_EXCEEDED, detail)
        assert (await by_dave.deposit(owner, envelope_bytes(3000))).code == m.MbCode.OK
        over = await by_dave.deposit(owner, envelope_bytes(2001))
        assert (over.code, over.detail) == (m.MbCode.QUOTA_EXCEEDED, detail)
        status = await owned.status()
        assert (status.envelopes, status.bytes, status.contacts) == (3, 6000, 2)


async def test_the_disk_budget_and_the_envelope_size(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path, max_disk_use=4000, max_envelope=3000) as mailbox:
        owner, _, _, client = await owner_and_contact(mailbox)
        assert (await client.deposit(owner, envelope_bytes(3000))).code == m.MbCode.OK
        full = await client.deposit(owner, envelope_bytes(1500))
        assert (full.code, full.detail) == (m.MbCode.MAILBOX_FULL, "the mailbox is full")
        large = await client.deposit(owner, envelope_bytes(3001))
        assert (large.code, large.detail) == (
            m.MbCode.TOO_LARGE,
            "an envelope is at most 3000 bytes",
        )
        bad = await client.deposit(owner, b"\x07" + envelope_bytes()[1:])
        assert bad.code == m.MbCode.BAD_REQUEST


async def test_one_owner_filling_its_budget_leaves_the_other_owners_room(
    tmp_path: Path, clock: MockClock
) -> None:
    # Two owners share a disk of 12,000 bytes; each may hold 6,000.
    limits = {"max_disk_use": 12000, "max_bytes_per_owner": 6000, "max_envelopes_per_owner": 3}
    async with running_mailbox(tmp_path, **limits) as mailbox:
        alice, alice_box, _, by_carol = await owner_and_contact(mailbox)
        dave = Peer()
        assert (await alice_box.register(dave)).code == m.MbCode.OK
        by_dave = await mailbox.connect(dave)
        bob, bob_box = await mailbox.owner()
        erin = Peer()
        assert (await bob_box.register(erin)).code == m.MbCode.OK
        by_erin = await mailbox.connect(erin)
        # Alice's two contacts spend her budget (each well within its own quota)...
        for client in (by_carol, by_dave):
            assert (await client.deposit(alice, envelope_bytes(3000))).code == m.MbCode.OK
        detail = "quota exceeded: at most 3 envelopes / 6000 bytes for one owner"
        for client in (by_carol, by_dave):
            over = await client.deposit(alice, envelope_bytes(1500))
            assert (over.code, over.detail) == (m.MbCode.QUOTA_EXCEEDED, detail)
        # ...and Bob's contact still finds his share whole, never MAILBOX_FULL.
        for _ in range(3):
            assert (await by_erin.deposit(bob, envelope_bytes(2000))).code == m.MbCode.OK
        fourth = await by_erin.deposit(bob, envelope_bytes(1500))
        assert (fourth.code, fourth.detail) == (
            m.MbCode.QUOTA_EXCEEDED,
            detail,
        )
        assert (await alice_box.status()).bytes == 6000


async def test_contacts_per_owner_are_bounded(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path, max_contacts_per_owner=2) as mailbox:
        _, owned = await mailbox.owner()
        for _ in range(2):
            assert (await owned.register(Peer())).code == m.MbCode.OK
        third = await owned.register(Peer())
        assert (third.code, third.detail) == (
            m.MbCode.QUOTA_EXCEEDED,
            "quota exceeded: at most 2 contacts per owner",
        )


async def test_a_redeposited_envelope_is_held_once(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        owner, owned, _, client = await owner_and_contact(mailbox)
        envelope = envelope_bytes()
        first = await client.deposit(owner, envelope)
        # The answer was lost; the contact deposits again, in a new session.
        again = await (await mailbox.connect_as(client)).deposit(owner, envelope)
        assert first.code == again.code == m.MbCode.OK
        assert first.value == again.value
        assert (await owned.status()).envelopes == 1


# -- prekeys ------------------------------------------------------------------------------


async def test_one_time_prekeys_go_once_then_the_last_resort_then_none(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        owner, owned, _, client = await owner_and_contact(mailbox)
        one = env.generate_prekey(
            owner.identity, env.PrekeyKind.ONE_TIME, now=mailbox.now_s(), lifetime=3600
        )
        last = env.generate_prekey(
            owner.identity, env.PrekeyKind.LAST_RESORT, now=mailbox.now_s(), lifetime=600
        )
        forged = env.generate_prekey(
            Peer().identity, env.PrekeyKind.ONE_TIME, now=mailbox.now_s(), lifetime=600
        )
        refused = await owned.ask(
            lambda r: m.MbPrekeys(r, (one.public.to_bytes(), forged.public.to_bytes()))
        )
        assert refused.code == m.MbCode.BAD_REQUEST
        assert (await owned.status()).one_time_prekeys == 0  # none of the batch stored
        stored = await owned.ask(
            lambda r: m.MbPrekeys(r, (one.public.to_bytes(), last.public.to_bytes()))
        )
        assert (stored.code, stored.value) == (m.MbCode.OK, 1)
        usage = await owned.status()
        assert usage.last_resort_not_after == last.public.not_after

        async def take() -> m.Message:
            answer: m.Message = await client.ask(lambda r: m.MbGetPrekey(r, owner.key))
            return answer

        first = await take()
        assert isinstance(first, m.MbPrekey)
        assert env.SignedPrekey.parse(first.prekey) == one.public
        for _ in range(2):
            fallback = await take()
            assert isinstance(fallback, m.MbPrekey)
            assert fallback.prekey == last.public.to_bytes()
        await trio.sleep(601)
        none = await take()
        assert isinstance(none, m.MbResult)
        assert none.code == m.MbCode.NO_PREKEY


async def test_one_contact_cannot_take_the_one_time_prekeys_of_the_others(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        owner, owned, carol, by_carol = await owner_and_contact(mailbox)
        dave, mallory = Peer(), Peer()
        for peer in (dave, mallory):
            assert (await owned.register(peer)).code == m.MbCode.OK
        by_dave, by_mallory = await mailbox.connect(dave), await mailbox.connect(mallory)
        now = mailbox.now_s()
        stock = [
            env.generate_prekey(owner.identity, env.PrekeyKind.ONE_TIME, now=now, lifetime=3600)
            for _ in range(10)
        ]
        last = env.generate_prekey(
            owner.identity, env.PrekeyKind.LAST_RESORT, now=now, lifetime=3600
        )
        upload = tuple(p.public.to_bytes() for p in [*stock, last])
        assert (await owned.ask(lambda r: m.MbPrekeys(r, upload))).value == 10

        async def take(client: Client) -> env.SignedPrekey:
            answer = await client.ask(lambda r: m.MbGetPrekey(r, owner.key))
            assert isinstance(answer, m.MbPrekey), answer
            return env.SignedPrekey.parse(answer.prekey)

        # Mallory asks again and again and deposits nothing: four one-time
        # prekeys, then the last resort, alone.
        taken = [await take(by_mallory) for _ in range(20)]
        kinds = [p.kind for p in taken]
        assert kinds == [env.PrekeyKind.ONE_TIME] * LIMIT + [env.PrekeyKind.LAST_RESORT] * 16
        # Carol and Dave still get one-time prekeys: the stock is not empty.
        mine = await take(by_carol)
        assert (await take(by_dave)).kind == env.PrekeyKind.ONE_TIME
        assert mine.kind == env.PrekeyKind.ONE_TIME
        usage = await owned.status()
        assert usage.one_time_prekeys == 10 - LIMIT - 2
        assert usage.unused_by_contact() == {mallory.key: LIMIT, carol.key: 1, dave.key: 1}
        # A deposit sealed to a prekey its depositor took counts as its use.
        sealed = envelope_bytes()
        sealed = sealed[:17] + mine.key_id + sealed[33:]
        assert (await by_carol.deposit(owner, sealed)).code == m.MbCode.OK
        assert carol.key not in (await owned.status()).unused_by_contact()
        # One of Mallory's, used: Mallory may take one more one-time prekey.
        used = envelope_bytes()
        used = used[:17] + taken[0].key_id + used[33:]
        assert (await by_mallory.deposit(owner, used)).code == m.MbCode.OK
        assert (await take(by_mallory)).kind == env.PrekeyKind.ONE_TIME
        assert (await take(by_mallory)).kind == env.PrekeyKind.LAST_RESORT
        # Deregistered, a contact's unused prekeys are no longer counted.
        await owned.ask(lambda r: m.MbDeregister(r, mallory.key))
        assert (await owned.status()).unused_by_contact() == {dave.key: 1}


# -- fetching -----------------------------------------------------------------------------


async def test_fetch_sends_what_is_held_then_pushes_each_new_deposit(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        owner, owned, _, client = await owner_and_contact(mailbox)
        held = [envelope_bytes() for _ in range(20)]  # more than a page
        for e in held:
            assert (await client.deposit(owner, e)).code == m.MbCode.OK
        seqs = list(range(1, 21))  # the owner's own numbering
        answer = await owned.ask(lambda r: m.MbFetch(r, seqs[1]))
        assert (answer.code, answer.value) == (m.MbCode.OK, seqs[-1])
        assert [e.seq for e in owned.envelopes] == seqs[2:]
        assert [e.envelope for e in owned.envelopes] == held[2:]
        owned.envelopes.clear()
        late = envelope_bytes()
        assert (await client.deposit(owner, late)).code == m.MbCode.OK
        pushed = await owned.envelope()
        assert (pushed.seq, pushed.envelope) == (21, late)
        assert pushed.id == env.EnvelopeHeader.parse(late).envelope_id
        deleted = await owned.ask(lambda r: m.MbDelete(r, (pushed.id, bytes(16))))
        assert (deleted.code, deleted.value) == (m.MbCode.OK, 1)
        status = await owned.status()
        assert status.envelopes == 20
        usage = await mailbox.server.usage()
        assert usage[0].last_drained_ms is not None


async def test_seqs_are_each_owners_and_a_depositor_gets_none(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        alice, alice_box, _, for_alice = await owner_and_contact(mailbox)
        bob, bob_box, _, for_bob = await owner_and_contact(mailbox)
        answers = []
        for _ in range(3):
            answers.append(await for_alice.deposit(alice, envelope_bytes()))
            for _ in range(5):
                answers.append(await for_bob.deposit(bob, envelope_bytes()))
        # A depositor learns nothing of how many envelopes anyone received.
        assert {(a.code, a.value) for a in answers} == {(m.MbCode.OK, 0)}
        # Each owner counts its own envelopes: no gaps for the other's.
        for box, count in ((alice_box, 3), (bob_box, 15)):
            done = await box.ask(lambda r: m.MbFetch(r, 0))
            assert [e.seq for e in box.envelopes] == list(range(1, count + 1))
            assert done.value == count


async def test_retention_expires_old_envelopes(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path, retention=3600.0) as mailbox:
        owner, owned, _, client = await owner_and_contact(mailbox)
        await client.deposit(owner, envelope_bytes())
        await trio.sleep(1800)
        await client.deposit(owner, envelope_bytes())
        await trio.sleep(1800 + HOUSEKEEPING_INTERVAL)
        assert (await owned.status()).envelopes == 1
        await trio.sleep(1800)
        assert (await owned.status()).envelopes == 0


# -- wiping -------------------------------------------------------------------------------


async def test_an_owner_wipes_its_space(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        owner, owned, contact, client = await owner_and_contact(mailbox)
        for _ in range(3):
            await client.deposit(owner, envelope_bytes())
        wiped = await owned.ask(m.MbWipe)
        assert (wiped.code, wiped.value) == (m.MbCode.OK, 3)
        assert same_answer(await owned.status()) == NOT_FOUND
        assert same_answer(await client.deposit(owner, envelope_bytes())) == NOT_FOUND
        assert mailbox.server.decide(contact.address) is PeerDecision.REFUSE
        assert await mailbox.server.usage() == []


async def test_the_operator_wipes_one_owner_or_all(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        alice, _, _, by_contact = await owner_and_contact(mailbox)
        bob, _, _, _ = await owner_and_contact(mailbox)
        await by_contact.deposit(alice, envelope_bytes())
        usage = {u.owner: u for u in await mailbox.server.usage()}
        assert usage[str(alice.address)].envelopes == 1
        assert usage[str(bob.address)].contacts == 1
        wiped = await mailbox.server.wipe(alice.address)
        assert (wiped.envelopes, wiped.owners) == (1, 1)
        assert [u.owner for u in await mailbox.server.usage()] == [str(bob.address)]
        assert (await mailbox.server.wipe(None)).owners == 1
        assert await mailbox.server.usage() == []


# -- failure domains ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        msgpack.packb([50, b"x"]),  # an unknown core tag
        b"\xc1",  # not msgpack at all
        m.encode(m.Text(bytes(16), 1, "hello", "text/plain")),  # not a mailbox's record
        m.encode(m.MbResult(1, 0)),  # an answer, from a client
        m.encode(m.Ack((bytes(16),))),
    ],
)
async def test_bad_input_ends_only_that_session(
    tmp_path: Path, clock: MockClock, bad: bytes
) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        owner, owned, _, client = await owner_and_contact(mailbox)
        await client.write_record(bad)
        assert await client.ended() == CloseCode.BAD_MESSAGE
        # Another client, and a new session of the same one, are served as before.
        assert (await owned.status()).contacts == 1
        again = await mailbox.connect_as(client)
        assert (await again.deposit(owner, envelope_bytes())).code == m.MbCode.OK


async def test_a_peer_vanishing_mid_frame_ends_only_its_session(
    tmp_path: Path, clock: MockClock
) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        _, owned, _, client = await owner_and_contact(mailbox)
        await client.stream.send_all(b"\x02\x00" + bytes(100))  # half a frame
        await client.stream.aclose()
        await trio.sleep(1)
        assert (await owned.status()).contacts == 1
        assert (await owned.ask(lambda r: m.MbFetch(r, 0))).code == m.MbCode.OK


# -- durability ---------------------------------------------------------------------------


async def test_what_was_acknowledged_survives_a_crash(tmp_path: Path, clock: MockClock) -> None:
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    async with running_mailbox(tmp_path) as mailbox:
        owner, _, _, client = await owner_and_contact(mailbox)
        envelope = envelope_bytes()
        assert (await client.deposit(owner, envelope)).code == m.MbCode.OK
        seq = 1
        # The files as a kill -9 right after the answer leaves them (WAL and
        # binding file, storage.md §5.4, and all).
        for name in ("mailbox.db", "mailbox.db-wal", "mailbox.db-bind"):
            shutil.copy(tmp_path / name, crashed / name)
    with MailboxStore.open(crashed / "mailbox.db", KEY) as store:
        (held,) = store.envelopes(owner.address, after=0, limit=10)
        assert (held.seq, held.data) == (seq, envelope)
        assert store.integrity_check() == []


# -- bounds and logs ----------------------------------------------------------------------


async def test_records_are_rate_limited_per_session(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path, records_per_second=10.0) as mailbox:
        _, owned = await mailbox.owner()
        start = trio.current_time()
        for _ in range(60):
            await owned.status()
        # A burst of 20, then 10 a second: the rest waited for tokens.
        assert trio.current_time() - start >= (60 + 1 - 20) / 10 - 1


async def test_sessions_per_peer_are_bounded(tmp_path: Path, clock: MockClock) -> None:
    async with running_mailbox(tmp_path) as mailbox:
        owner, first = await mailbox.owner()
        sessions = [first] + [
            await mailbox.connect(owner) for _ in range(MAX_SESSIONS_PER_PEER - 1)
        ]
        for client in sessions:
            assert isinstance(await client.status(), m.MbUsage)
        extra = await mailbox.connect(owner)
        assert await extra.ended() == CloseCode.RATE_LIMITED
        await sessions[0].channel.aclose()
        await trio.sleep(1)
        assert isinstance(await (await mailbox.connect(owner)).status(), m.MbUsage)


async def test_logs_hold_handles_and_ids_never_contents_tokens_or_keys(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="onionpost")
    async with running_mailbox(tmp_path) as mailbox:
        code = await mailbox.code()
        owner = Peer()
        owned = await mailbox.connect(owner)
        await owned.pair(code, owner)
        contact = Peer()
        await owned.register(contact)
        client = await mailbox.connect(contact)
        envelope = envelope_bytes()
        await client.deposit(owner, envelope)
        await owned.ask(lambda r: m.MbFetch(r, 0))
    text = caplog.text
    for secret in (code.token(), code.secret, envelope[40:80], contact.client_auth_public):
        assert secret.hex() not in text
        assert repr(secret)[2:-1] not in text
    assert "event=deposited owner=#1 seq=1" in text
    info = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    for address in (owner.address, contact.address):
        assert address.service_id not in info
        assert address.service_id in text  # at DEBUG only


async def test_a_setup_code_never_reaches_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The code is a bearer secret: made through the local API (what `onionpost
    mailbox code --json` asks) and used to pair, it is in no log line, at any
    level, in any form."""
    caplog.set_level(logging.DEBUG)
    async with running_mailbox(tmp_path) as mailbox:
        backend = MailboxBackend(
            None,  # type: ignore[arg-type] # whoami is not asked
            mailbox.server,
            MailboxPolicy(),
            tor_status=lambda: api.TorStatus(api.TorState.OK),
        )
        with short_tmpdir() as run:
            socket = run / "control.sock"
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_api, backend, socket)
                async with open_client(socket_path=socket) as client:
                    issued = await client.mailbox_code(3600)
                nursery.cancel_scope.cancel()
        code = SetupCode.parse(issued.code)
        owner = Peer()
        session = await mailbox.connect(owner)
        assert (await session.pair(code, owner)).code == m.MbCode.OK
    assert any("setup_code_made" in r.getMessage() for r in caplog.records)
    forms = {
        issued.code,
        issued.code.lower(),
        issued.code.upper(),
        code.secret.hex(),
        code.token().hex(),
        code.client_auth_private().hex(),
    }
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert [form for form in forms if form in logged] == []
