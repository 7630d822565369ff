"""A contact added from a card bundle (trust.md §7.5): the endorsement that
travels beside the card is judged at once, for the card's address, before
any session; a forged or misdirected one is recorded as refused, a malformed
line adds nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from onionpost import api
from onionpost.daemon.delivery import install_own
from onionpost.errors import CardError
from onionpost.home import endorsement_line
from onionpost.testing.agency import Agency
from onionpost.testing.memory import network


def _now() -> int:
    return int(time.time())


async def test_an_endorsement_in_the_card_bundle_is_judged_before_any_session(
    tmp_path: Path,
) -> None:
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol, mallory = (net.node(n) for n in ("alice", "bob", "carol", "mallory"))
        alice.store.trust.add(acme.anchor, _now() * 1000)
        proof = acme.endorse(alice.secrets.identity, _now()).encode()
        install_own(alice.store, str(alice.address), proof, _now() * 1000)
        alice.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, _now()), None)
        await alice.start(nursery)
        await bob.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        me = await alice.daemon.whoami(api.Whoami())
        assert me.endorsement == endorsement_line(proof)
        assert (await bob.daemon.whoami(api.Whoami())).endorsement == ""  # none installed

        # Alice stops: no session can carry her staple. Bob holds acme's
        # anchor and a fresh list, and judges the bundle's endorsement.
        alice.stop()
        bob.store.trust.add(acme.anchor, _now() * 1000)
        bob.store.trust.hold(acme.anchor.fingerprint, acme.revocations(2, _now()), None)
        await bob.daemon.contacts.contact_add(api.ContactAdd(me.card, None, me.endorsement))
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
        assert listed["alice"].endorsement_status == "endorsed"
        assert (listed["alice"].endorsement or "").startswith("endorsed by acme (Field office 3")
        assert listed["alice"].reachable is False

        # Alice's endorsement beside carol's card: for another address.
        await bob.daemon.contacts.contact_add(api.ContactAdd(carol.card(), None, me.endorsement))
        # An endorsement by another root calling itself acme: forged.
        impostor = Agency.make("acme", _now()).endorse(mallory.secrets.identity, _now())
        forged = endorsement_line(impostor.encode())
        await bob.daemon.contacts.contact_add(api.ContactAdd(mallory.card(), None, forged))
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
        assert listed["carol"].endorsement == "refused: wrong-address"
        assert listed["mallory"].endorsement == "refused: forged delegation"

        # A malformed endorsement line: refused, and the contact is not added.
        dave = net.node("dave")
        for bad in ("onionpost-endorsement1:!!", "onionpost-endorsement1:", "garbage"):
            with pytest.raises(CardError):
                await bob.daemon.contacts.contact_add(api.ContactAdd(dave.card(), None, bad))
        assert bob.store.contacts.contact_by_address(dave.address) is None
        # A well-formed line that is no proof: recorded as malformed, added.
        junk = endorsement_line(b"\x93\x01\x02\x03")
        await bob.daemon.contacts.contact_add(api.ContactAdd(dave.card(), None, junk))
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
        assert (listed["dave"].endorsement or "").startswith("refused: malformed")
        assert (await bob.daemon.whoami(api.Whoami())).address == str(bob.address)


async def test_with_require_endorsement_a_bundle_lets_the_outbox_go(tmp_path: Path) -> None:
    """A contact added from a valid bundle is not held for want of an
    endorsement; one added from its card alone is, until it presents one."""
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        bob = net.node("bob", require_endorsement=True)
        alice.store.trust.add(acme.anchor, _now() * 1000)
        proof = acme.endorse(alice.secrets.identity, _now()).encode()
        install_own(alice.store, str(alice.address), proof, _now() * 1000)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        bob.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, _now()), None)
        await bob.start(nursery)
        assert bob.daemon is not None
        await bob.daemon.contacts.contact_add(
            api.ContactAdd(alice.card(), None, endorsement_line(proof))
        )
        await bob.daemon.contacts.contact_add(api.ContactAdd(carol.card()))
        report = {c.name: c for c in (await bob.daemon.status(api.GetStatus())).contacts}
        assert report["alice"].refused == ""
        assert report["carol"].refused == "endorsement required: none presented"


async def test_an_anchor_added_after_the_bundle_judges_it_at_once(tmp_path: Path) -> None:
    """A bundle added before its agency's anchor is 'no anchor for agency
    acme'; `trust add` judges it again at once, not at the next housekeeping
    round, so `contact list` right after it is not left saying so."""
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        proof = acme.endorse(alice.secrets.identity, _now()).encode()
        alice.store.trust.add(acme.anchor, _now() * 1000)
        install_own(alice.store, str(alice.address), proof, _now() * 1000)
        bob.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, _now()), None)
        await bob.start(nursery)
        assert bob.daemon is not None
        await bob.daemon.contacts.contact_add(
            api.ContactAdd(alice.card(), None, endorsement_line(proof))
        )
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
        assert listed["alice"].endorsement == "no anchor for agency acme"
        await bob.daemon.trust.trust_add(
            api.TrustAdd(acme.anchor.to_text(), acme.anchor.safety_number)
        )
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
        assert listed["alice"].endorsement_status == "endorsed"
