"""Handling labels through the daemon, over the in-memory network: sent,
received and shown; refused above a contact's limit (advertised or set
here); forwarded only up; TLP:RED kept in its audience; exports refused by
policy; a label changed in the store found by ``log verify`` and by an
export's verification."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from onionpost import api
from onionpost.daemon import _labels
from onionpost.errors import LabelError, LabelReason, StoreError
from onionpost.proto import bundle
from onionpost.proto.labels import LabelPolicy, Scheme, Via
from onionpost.store import Direction
from onionpost.testing.agency import Agency
from onionpost.testing.memory import Node, befriend, network, until


def _stored_labels(node: Node, other: Node) -> list[str]:
    return [s.label for s in node.inbox_from(other)]


async def test_a_label_travels_with_its_text_and_is_shown(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        red = await alice.daemon.messages.send_text(
            api.SendText("bob", "eyes only", label="TLP:RED")
        )
        default = await alice.daemon.messages.send_text(api.SendText("bob", "as usual"))
        assert (red.label, default.label) == ("TLP:RED", "TLP:AMBER")
        await until(lambda: len(bob.inbox_from(alice)) == 2)
        assert _stored_labels(bob, alice) == ["TLP:RED", "TLP:AMBER"]
        shown = await bob.daemon.messages.message(api.GetMessage(red.id))
        assert shown.label == shown.banner == "TLP:RED"
        inbox = await bob.daemon.messages.inbox(api.Inbox())
        assert [m.label for m in inbox] == ["TLP:RED", "TLP:AMBER"]
        # Sent copies carry it too.
        assert (await alice.daemon.messages.message(api.GetMessage(red.id))).label == "TLP:RED"


async def test_a_label_in_published_syntax_is_stored_canonical(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        queued = await alice.daemon.messages.send_text(
            api.SendText("bob", "x", label="CUI//SP-EXPT/SP-CTI//NOFORN")
        )
        assert queued.label == "CUI//SP-CTI/SP-EXPT//NOFORN"


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("TLP:WHITE", LabelReason.UNKNOWN_LEVEL),
        ("SECRET", LabelReason.MALFORMED),
        ("NATO:SECRET", LabelReason.UNKNOWN_SCHEME),
        ("CUI//SP-CTI/NOFORN", LabelReason.MALFORMED),
    ],
)
async def test_a_bad_label_queues_nothing(tmp_path: Path, label: str, reason: LabelReason) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        with pytest.raises(LabelError) as info:
            await alice.daemon.messages.send_text(api.SendText("bob", "x", label=label))
        assert info.value.reason is reason
        source = tmp_path / "f.bin"
        source.write_bytes(b"data")
        with pytest.raises(LabelError):
            await alice.daemon.messages.send_file(api.SendFile("bob", str(source), label=label))
        with pytest.raises(LabelError):
            await alice.daemon.messages.send_texts(
                api.SendTexts("bob", (api.TextItem("a"),), label=label)
            )
        assert alice.store.outbox.listing() == []
        assert alice.store.evidence.size() == 1  # the contact added, nothing else


async def test_the_receiver_s_advertised_limit_is_enforced(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        bob = net.node("bob", labels=LabelPolicy.build(accept=["TLP:AMBER"]))
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        assert alice.daemon is not None
        # Any session tells alice what bob accepts.
        await alice.daemon.messages.send_text(api.SendText("bob", "hello", label="TLP:GREEN"))
        await until(lambda: len(bob.inbox_from(alice)) == 1)
        bob_id = alice.contact(bob).id
        await until(lambda: alice.store.contacts.label_limits(bob_id)[1] == ("TLP:AMBER",))
        with pytest.raises(LabelError, match="bob accepts up to TLP:AMBER") as info:
            await alice.daemon.messages.send_text(api.SendText("bob", "too much", label="TLP:RED"))
        assert info.value.reason is LabelReason.ABOVE_LIMIT
        with pytest.raises(LabelError, match="no CUI labels"):
            await alice.daemon.messages.send_text(api.SendText("bob", "other scheme", label="CUI"))
        await alice.daemon.messages.send_text(api.SendText("bob", "fine", label="TLP:AMBER"))
        listed = await alice.daemon.contacts.contact_list(api.ContactList())
        assert listed[0].accepts == ("TLP:AMBER",)
        await until(lambda: len(bob.inbox_from(alice)) == 2)
        assert _stored_labels(bob, alice) == ["TLP:GREEN", "TLP:AMBER"]


async def test_a_limit_set_here_is_enforced_and_can_be_lifted(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        set_to = await alice.daemon.contacts.contact_set_max_label(
            api.ContactSetMaxLabel("bob", ("TLP:GREEN", "CUI//SP-CTI"))
        )
        assert set_to == api.ContactLabels("bob", ("TLP:GREEN", "CUI//SP-CTI"), ())
        with pytest.raises(LabelError, match="bob is sent nothing above TLP:GREEN from here"):
            await alice.daemon.messages.send_text(api.SendText("bob", "x", label="TLP:AMBER"))
        with pytest.raises(LabelError, match="above CUI//SP-CTI"):
            await alice.daemon.messages.send_text(api.SendText("bob", "x", label="CUI//SP-EXPT"))
        await alice.daemon.messages.send_text(api.SendText("bob", "x", label="CUI//SP-CTI"))
        with pytest.raises(LabelError, match="one label per scheme"):
            await alice.daemon.contacts.contact_set_max_label(
                api.ContactSetMaxLabel("bob", ("TLP:GREEN", "TLP:RED"))
            )
        with pytest.raises(LabelError):
            await alice.daemon.contacts.contact_set_max_label(
                api.ContactSetMaxLabel("bob", ("TLP:X",))
            )
        await alice.daemon.contacts.contact_set_max_label(api.ContactSetMaxLabel("bob", ()))
        await alice.daemon.messages.send_text(api.SendText("bob", "x", label="TLP:RED"))


async def test_forward_keeps_or_raises_and_red_stays_in_its_audience(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(bob, carol)
        for node in (alice, bob, carol):
            await node.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        amber = await alice.daemon.messages.send_text(
            api.SendText("bob", "amber", label="TLP:AMBER")
        )
        red = await alice.daemon.messages.send_text(api.SendText("bob", "red", label="TLP:RED"))
        await until(lambda: len(bob.inbox_from(alice)) == 2)
        kept = await bob.daemon.messages.forward(api.Forward(amber.id, "carol"))
        raised = await bob.daemon.messages.forward(
            api.Forward(amber.id, "carol", label="TLP:AMBER+STRICT")
        )
        assert (kept.label, raised.label) == ("TLP:AMBER", "TLP:AMBER+STRICT")
        assert kept.id != amber.id
        with pytest.raises(LabelError, match="never lowered") as lowered:
            await bob.daemon.messages.forward(api.Forward(amber.id, "carol", label="TLP:GREEN"))
        assert lowered.value.reason is LabelReason.LOWERED
        with pytest.raises(LabelError) as moved:
            await bob.daemon.messages.forward(api.Forward(amber.id, "carol", label="CUI"))
        assert str(moved.value) == (
            "a copy of a TLP:AMBER message cannot be labelled CUI: "
            "a copy keeps its label's scheme (TLP)"
        )
        with pytest.raises(LabelError, match="carol was not one") as outside:
            await bob.daemon.messages.forward(api.Forward(red.id, "carol"))
        assert outside.value.reason is LabelReason.OUTSIDE_AUDIENCE
        # Back to its audience (the contact it came from) is allowed.
        back = await bob.daemon.messages.forward(api.Forward(red.id, "alice"))
        assert back.label == "TLP:RED"
        # Raised to RED by the forward: a new RED message, carol its named recipient.
        raised_red = await bob.daemon.messages.forward(
            api.Forward(amber.id, "carol", label="TLP:RED")
        )
        assert raised_red.label == "TLP:RED"
        await until(lambda: len(carol.inbox_from(bob)) == 3)
        assert _stored_labels(carol, bob) == ["TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED"]
        assert [s.body for s in carol.inbox_from(bob)] == ["amber", "amber", "amber"]
        # ... which carol may send on only back to bob.
        assert carol.daemon is not None
        carol_copy = carol.inbox_from(bob)[2].id.hex()
        befriend(carol, alice)
        with pytest.raises(LabelError, match="alice was not one"):
            await carol.daemon.messages.forward(api.Forward(carol_copy, "alice"))


async def test_forward_checks_the_recipient_s_limit_and_the_organisation(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        bob = net.node("bob", labels=LabelPolicy.build(organisation="acme"))
        carol = net.node("carol")
        befriend(alice, bob)
        befriend(bob, carol)
        await alice.start(nursery)
        await bob.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        strict = await alice.daemon.messages.send_text(
            api.SendText("bob", "strict", label="TLP:AMBER+STRICT")
        )
        amber = await alice.daemon.messages.send_text(
            api.SendText("bob", "amber", label="TLP:AMBER")
        )
        await until(lambda: len(bob.inbox_from(alice)) == 2)
        with pytest.raises(LabelError) as info:
            await bob.daemon.messages.forward(api.Forward(strict.id, "carol"))
        assert info.value.reason is LabelReason.OUTSIDE_ORGANISATION
        await bob.daemon.contacts.contact_set_max_label(
            api.ContactSetMaxLabel("carol", ("TLP:GREEN",))
        )
        with pytest.raises(LabelError, match="carol is sent nothing above TLP:GREEN from here"):
            await bob.daemon.messages.forward(api.Forward(amber.id, "carol"))
        assert bob.store.outbox.listing() == []


async def test_forward_of_a_file_and_of_an_unlabelled_message(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(bob, carol)
        for node in (alice, bob, carol):
            await node.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        source = tmp_path / "plan.pdf"
        source.write_bytes(b"%PDF" + bytes(range(256)) * 300)
        sent = await alice.daemon.messages.send_file(
            api.SendFile("bob", str(source), label="TLP:GREEN")
        )
        assert sent.label == "TLP:GREEN"
        await until(lambda: len(bob.inbox_from(alice)) == 1)
        forwarded = await bob.daemon.messages.forward(
            api.Forward(sent.id, "carol", label="TLP:AMBER")
        )
        assert (forwarded.name, forwarded.label) == ("plan.pdf", "TLP:AMBER")
        await until(lambda: len(carol.inbox_from(bob)) == 1)
        (got,) = carol.inbox_from(bob)
        assert got.label == "TLP:AMBER"
        assert got.file is not None
        assert got.file.name == "plan.pdf"
        out = carol.store.transfers.export_file(got.id, tmp_path / "out.pdf")
        assert out.read_bytes() == source.read_bytes()
        # An earlier sender's unlabelled text: forwarded only under a label given.
        bob_id = bob.contact(alice).id
        old_id = bytes(range(16))
        assert bob.store.messages.store_text(bob_id, old_id, 1, "old", "text/plain", 2)
        with pytest.raises(LabelError, match="carries no label"):
            await bob.daemon.messages.forward(api.Forward(old_id.hex(), "carol"))
        again = await bob.daemon.messages.forward(
            api.Forward(old_id.hex(), "carol", label="TLP:GREEN")
        )
        assert again.label == "TLP:GREEN"


async def test_an_unknown_received_label_is_kept_but_goes_no_further(tmp_path: Path) -> None:
    acme = Scheme("ACME", ("INTERNAL", "SENSITIVE"), frozenset({"LES"}))
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice", labels=LabelPolicy.build(schemes=[acme]))
        bob, carol = net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(bob, carol)
        for node in (alice, bob):
            await node.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        sent = await alice.daemon.messages.send_text(
            api.SendText("bob", "ours", label="ACME:SENSITIVE//LES")
        )
        await until(lambda: len(bob.inbox_from(alice)) == 1)
        assert _stored_labels(bob, alice) == ["ACME:SENSITIVE//LES"]
        with pytest.raises(LabelError) as info:
            await bob.daemon.messages.forward(api.Forward(sent.id, "carol"))
        assert info.value.reason is LabelReason.UNKNOWN_SCHEME
        with pytest.raises(LabelError):
            await bob.daemon.messages.forward(api.Forward(sent.id, "carol", label="TLP:RED"))


async def test_an_export_keeps_labels_and_refuses_what_policy_forbids(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        green = await alice.daemon.messages.send_text(api.SendText("bob", "g", label="TLP:GREEN"))
        strict = await alice.daemon.messages.send_text(
            api.SendText("bob", "s", label="TLP:AMBER+STRICT")
        )
        red = await alice.daemon.messages.send_text(api.SendText("bob", "r", label="TLP:RED"))
        dest = tmp_path / "out.zip"
        with pytest.raises(
            LabelError,
            match=f"^message {red.id} cannot be exported: .*; leave it out with --id, --since",
        ):
            await alice.daemon.evidence.evidence_export(api.EvidenceExport(str(dest)))
        assert not dest.exists()
        # Several refused: the first named, the rest counted.
        red2 = await alice.daemon.messages.send_text(api.SendText("bob", "r2", label="TLP:RED"))
        with pytest.raises(LabelError, match=f"^message {red.id} \\(and 1 more\\) cannot be"):
            await alice.daemon.evidence.evidence_export(api.EvidenceExport(str(dest)))
        assert not dest.exists()
        assert red2.id != red.id
        done = await alice.daemon.evidence.evidence_export(
            api.EvidenceExport(str(dest), ids=(green.id, strict.id))
        )
        assert done.messages == 2
        with zipfile.ZipFile(dest) as archive:
            report = bundle.verify(archive)
            document = archive.read(bundle.BUNDLE_NAME).decode()
        assert report.ok, report.problems
        assert '"label": "TLP:AMBER+STRICT"' in document
        # A stricter export_max refuses AMBER+STRICT too.
        alice.daemon.evidence._labels = LabelPolicy.build(export_max=["TLP:AMBER"])
        with pytest.raises(LabelError, match="exports up to TLP:AMBER"):
            await alice.daemon.evidence.evidence_export(
                api.EvidenceExport(str(tmp_path / "two.zip"), ids=(strict.id,))
            )


async def test_a_label_changed_in_the_store_is_found(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        red = await alice.daemon.messages.send_text(api.SendText("bob", "r", label="TLP:RED"))
        assert (await alice.daemon.evidence.log_verify(api.LogVerify())).ok
        # Someone with the store key rewrites the row, sealed afresh, as GREEN.
        store = alice.store
        rid = bytes.fromhex(red.id)
        contact_id = alice.contact(bob).id
        content = store._rows.seal(
            ("messages", Direction.OUT, contact_id, rid), ["r", "text/plain", "TLP:GREEN"]
        )
        with store.transaction():
            store._db.execute(
                "UPDATE messages SET content = ? WHERE id = ? AND direction = 'out'",
                (content, rid),
            )
        assert store.messages.message(rid).label == "TLP:GREEN"
        report = await alice.daemon.evidence.log_verify(api.LogVerify())
        assert not report.ok
        assert any(red.id in p and "label" in p for p in report.problems)
        # ... and the export of it does not verify.
        dest = tmp_path / "out.zip"
        await alice.daemon.evidence.evidence_export(api.EvidenceExport(str(dest), ids=(red.id,)))
        with zipfile.ZipFile(dest) as archive:
            verified = bundle.verify(archive)
        assert not verified.ok
        assert any("changed after it was logged" in p for p in verified.problems)


async def test_a_label_flipped_in_a_stored_row_does_not_open(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        sent = await alice.daemon.messages.send_text(api.SendText("bob", "r", label="TLP:RED"))
        rid = bytes.fromhex(sent.id)
        store = alice.store
        with store.transaction():
            (content,) = store._db.execute(
                "SELECT content FROM messages WHERE id = ?", (rid,)
            ).fetchone()
            flipped = bytearray(content)
            flipped[-20] ^= 0x01
            store._db.execute("UPDATE messages SET content = ? WHERE id = ?", (bytes(flipped), rid))
        with pytest.raises(StoreError, match="content of message"):
            store.messages.message(rid)


async def test_what_a_list_or_group_sender_calls(tmp_path: Path) -> None:
    """``_labels.check_list_send``: the one call a distribution list or a
    group makes before queueing any copy."""
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        members = [(alice.contact(bob).id, "bob"), (alice.contact(carol).id, "carol")]
        policy = LabelPolicy.build()
        parse = policy.labels.parse
        _labels.check_list_send(alice.store, policy, parse("TLP:AMBER"), members)
        for via in (Via.LIST, Via.GROUP):
            with pytest.raises(LabelError) as info:
                _labels.check_list_send(alice.store, policy, parse("TLP:RED"), members, via=via)
            assert info.value.reason is LabelReason.OUTSIDE_AUDIENCE
        alice.store.contacts.set_label_limit(members[1][0], ["TLP:GREEN"])
        with pytest.raises(LabelError, match="carol is sent nothing above TLP:GREEN from here"):
            _labels.check_list_send(alice.store, policy, parse("TLP:AMBER"), members)
        strict = LabelPolicy.build(organisation="acme")
        with pytest.raises(LabelError) as info:
            _labels.check_list_send(alice.store, strict, parse("TLP:AMBER+STRICT"), members)
        assert info.value.reason is LabelReason.OUTSIDE_ORGANISATION
        assert nursery is not None


async def test_red_sent_on_within_the_group_that_was_its_audience(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        members = [(alice.contact(bob).id, "bob"), (alice.contact(carol).id, "carol")]
        red = LabelPolicy.build().labels.parse("TLP:RED")
        policy = LabelPolicy.build()
        _labels.check_list_send(
            alice.store, policy, red, members, via=Via.GROUP, audience=["bob", "carol"]
        )
        with pytest.raises(LabelError, match="carol was not one"):
            _labels.check_list_send(
                alice.store, policy, red, members, via=Via.GROUP, audience=["bob"]
            )
        assert nursery is not None


async def test_a_list_send_is_labelled_and_held_to_every_member(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        for node in (alice, bob, carol):
            await node.start(nursery)
        assert alice.daemon is not None
        lists = alice.daemon.lists
        await lists.list_create(api.ListCreate("team", ("bob", "carol")))
        with pytest.raises(LabelError, match="not to a list") as red:
            await lists.list_send_text(api.ListSendText("team", "eyes only", label="TLP:RED"))
        assert red.value.reason is LabelReason.OUTSIDE_AUDIENCE
        await alice.daemon.contacts.contact_set_max_label(
            api.ContactSetMaxLabel("carol", ("TLP:GREEN",))
        )
        with pytest.raises(LabelError, match="carol is sent nothing above TLP:GREEN from here"):
            await lists.list_send_text(api.ListSendText("team", "amber", label="TLP:AMBER"))
        source = tmp_path / "brief.txt"
        source.write_bytes(b"brief")
        with pytest.raises(LabelError, match="carol is sent nothing above TLP:GREEN from here"):
            await lists.list_send_file(api.ListSendFile("team", str(source), label="TLP:AMBER"))
        assert alice.store.outbox.listing() == []  # nothing queued for anyone
        sent = await lists.list_send_text(api.ListSendText("team", "green", label="TLP:GREEN"))
        with pytest.raises(LabelError, match="no CUI labels"):
            await lists.list_send_file(api.ListSendFile("team", str(source), label="CUI"))
        filed = await lists.list_send_file(api.ListSendFile("team", str(source), label="TLP:CLEAR"))
        assert len(sent.copies) == len(filed.copies) == 2
        await until(lambda: len(bob.inbox_from(alice)) == 2 and len(carol.inbox_from(alice)) == 2)
        for node in (bob, carol):
            assert sorted(s.label for s in node.inbox_from(alice)) == ["TLP:CLEAR", "TLP:GREEN"]


async def test_amber_strict_goes_where_endorsements_say_our_organisation_is(
    tmp_path: Path,
) -> None:
    """No organisation in config.toml: bob's comes from the endorsement he
    holds (acme); carol endorsed by acme may have an AMBER+STRICT forward,
    dave endorsed by bravo may not, nor erin who presented none."""
    now = int(time.time())
    acme, bravo = Agency.make("acme", now), Agency.make("bravo", now)
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        carol, dave, erin = net.node("carol"), net.node("dave"), net.node("erin")
        for other in (alice, carol, dave, erin):
            befriend(bob, other)
        store = bob.store
        store.trust.install_own(
            acme.anchor.fingerprint, acme.endorse(bob.secrets.identity, now).encode(), 1
        )
        for node, agency in ((carol, acme), (dave, bravo)):
            proof = agency.endorse(node.secrets.identity, now).encode()
            store.trust.set_endorsement(bob.contact(node).id, proof, "endorsed", "endorsed", 1)
        forged = acme.endorse(erin.secrets.identity, now).encode()
        store.trust.set_endorsement(bob.contact(erin).id, forged, "refused", "refused: forged", 1)
        await alice.start(nursery)
        await bob.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        strict = await alice.daemon.messages.send_text(
            api.SendText("bob", "strict", label="TLP:AMBER+STRICT")
        )
        await until(lambda: len(bob.inbox_from(alice)) == 1)
        for outside in ("dave", "erin"):
            with pytest.raises(LabelError, match=f"stays inside acme; {outside}") as info:
                await bob.daemon.messages.forward(api.Forward(strict.id, outside))
            assert info.value.reason is LabelReason.OUTSIDE_ORGANISATION
        assert bob.store.outbox.listing() == []
        forwarded = await bob.daemon.messages.forward(api.Forward(strict.id, "carol"))
        assert forwarded.label == "TLP:AMBER+STRICT"
