"""`log verify` and evidence bundles: a conversation with a file exported and
verified offline, and every kind of tampering refused, naming what failed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from trio.testing import MockClock

from onionpost import api
from onionpost.cli import main
from onionpost.daemon import _evidence
from onionpost.daemon.delivery import Witness
from onionpost.errors import ConfigError
from onionpost.proto import bundle, note
from onionpost.proto.evidence import Entry, Event
from onionpost.proto.identity import Identity
from onionpost.testing.memory import Node, befriend, network, until


async def _conversation(tmp_path: Path, nursery: trio.Nursery, net: object) -> tuple[Node, Node]:
    alice, bob = net.node("alice"), net.node("bob")  # type: ignore[attr-defined]
    befriend(alice, bob)
    for node in (alice, bob):
        await node.start(nursery)
    ids = [await alice.send(bob, f"report {i}") for i in range(3)]
    ids.append(await bob.send(alice, "received, thanks"))
    source = tmp_path / "scan.pdf"
    source.write_bytes(os.urandom(70_000))
    assert bob.daemon is not None
    queued = await bob.daemon.messages.send_file(api.SendFile("alice", str(source)))
    await until(lambda: all(alice.state(i) in ("delivered", "read") for i in ids[:3]))
    await until(lambda: len(alice.inbox_from(bob)) == 2)
    await until(lambda: bob.state(bytes.fromhex(queued.id)) == "delivered")
    # A second session, so that each has cosigned the other's log with those in it.
    for node in (alice, bob):
        node.stop()
        await until(lambda n=node: not n.up)
    for node in (alice, bob):
        await node.start(nursery)
    await alice.send(bob, "one more")
    size = alice.store.evidence.size()

    def witnessed() -> bool:
        held = alice.store.evidence.witness(alice.contact(bob).id)
        return held is not None and note.Checkpoint.from_text(held.text).size >= size - 3

    await until(witnessed)
    return alice, bob


async def _export(node: Node, dest: Path, **selection: object) -> api.EvidenceExported:
    assert node.daemon is not None
    return await node.daemon.evidence.evidence_export(api.EvidenceExport(str(dest), **selection))  # type: ignore[arg-type]


def _verify(path: Path) -> bundle.Report:
    with zipfile.ZipFile(path) as archive:
        return bundle.verify(archive)


def _rewrite(src: Path, dest: Path, **members: bytes) -> None:
    """A copy of the bundle with some members replaced."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dest, "w") as new:
        for info in old.infolist():
            data = members.get(info.filename, old.read(info))
            new.writestr(info.filename, data)


async def test_a_conversation_with_a_file_exports_and_verifies(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = await _conversation(tmp_path, nursery, net)
        out = tmp_path / "case.zip"
        result = await _export(alice, out, contact="bob")
        assert (result.messages, result.files) == (6, 1)
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        report = _verify(out)
        assert report.ok, report.problems
        assert report.endpoint == str(alice.address)
        assert (report.messages, report.files_checked) == (6, 1)
        assert [w.address for w in report.witnesses] == [str(bob.address)]
        # The export is itself in the log.
        last = Entry.decode(alice.store.evidence.entries(alice.store.evidence.size() - 1, 1)[0][1])
        assert last.event is Event.EXPORTED
        # The same file again is refused, nothing overwritten.
        with pytest.raises(Exception, match="already exists"):
            await _export(alice, out, contact="bob")
        # A selection by id.
        one = alice.inbox_from(bob)[0].id.hex()
        small = await _export(alice, tmp_path / "one.zip", ids=(one,))
        assert small.messages == 1
        assert _verify(tmp_path / "one.zip").ok
        # log verify at both ends: ok, witnessed.
        assert alice.daemon is not None
        log = await alice.daemon.evidence.log_verify(api.LogVerify())
        assert log.ok, log.problems
        assert log.witnesses[0].contact == "bob"


def _document(path: Path) -> dict[str, object]:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(bundle.BUNDLE_NAME))


def _with_document(src: Path, dest: Path, document: dict[str, object]) -> None:
    _rewrite(src, dest, **{bundle.BUNDLE_NAME: json.dumps(document).encode()})


async def test_every_change_to_a_bundle_is_refused_naming_what_failed(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, _bob = await _conversation(tmp_path, nursery, net)
        out = tmp_path / "case.zip"
        await _export(alice, out, contact="bob")
    good = _document(out)
    bad = tmp_path / "bad.zip"

    def refused(document: dict[str, object], expect: str) -> None:
        _with_document(out, bad, document)
        report = _verify(bad)
        assert not report.ok
        assert any(expect in p for p in report.problems), report.problems
        bad.unlink()

    texts = [m for m in good["messages"] if m["kind"] == "text"]  # type: ignore[union-attr,index]
    changed = json.loads(json.dumps(good))
    next(m for m in changed["messages"] if m["id"] == texts[0]["id"])["body"] = "report 9"
    refused(changed, "changed after it was logged")

    dropped = json.loads(json.dumps(good))
    victim = next(
        e
        for e in dropped["entries"]
        if Entry.decode(base64.b64decode(e["entry"])).message_id.hex() == texts[0]["id"]
    )
    dropped["entries"].remove(victim)
    refused(dropped, "no ")

    flipped = json.loads(json.dumps(good))
    raw = bytearray(base64.b64decode(flipped["entries"][0]["entry"]))
    raw[-1] ^= 1
    flipped["entries"][0]["entry"] = base64.b64encode(bytes(raw)).decode()
    refused(flipped, "entry 0")

    moved = json.loads(json.dumps(good))
    moved["entries"][0]["index"], moved["entries"][1]["index"] = (
        moved["entries"][1]["index"],
        moved["entries"][0]["index"],
    )
    refused(moved, "entry 0")

    inserted = json.loads(json.dumps(good))
    forged = Entry(Event.RECEIVED, 1, texts[0]["counterparty"], os.urandom(16), "text")
    inserted["entries"].append(
        {
            "index": 1,
            "entry": base64.b64encode(forged.encode()).decode(),
            "proof": inserted["entries"][1]["proof"],
        }
    )
    refused(inserted, "entry")

    other = Identity.generate()
    checkpoint = note.Note.parse(good["checkpoint"])  # type: ignore[arg-type]
    resigned = json.loads(json.dumps(good))
    resigned["checkpoint"] = note.sign(checkpoint.text, str(other.address), other).to_text()
    refused(resigned, "checkpoint")

    swapped = json.loads(json.dumps(good))
    swapped["witnesses"][0]["checkpoint"] = good["checkpoint"]
    refused(swapped, "witness 0")

    # A file swapped for another.
    member = next(m["member"] for m in good["messages"] if m["kind"] == "file")  # type: ignore[union-attr,index]
    _rewrite(out, bad, **{member: b"not the scan"})
    report = _verify(bad)
    assert not report.ok
    assert any("bytes do not match" in p for p in report.problems)


async def test_the_manifest_and_every_member_are_held_to_bundle_json(
    tmp_path: Path, clock: MockClock
) -> None:
    """manifest.jsonld (what forensic tools read) must be exactly what the
    export makes of the checked bundle.json, and the archive holds nothing
    else: a manifest edited, missing or left from another bundle.json, or a
    member added, is a problem, as a change to bundle.json is."""
    async with network(tmp_path) as (net, nursery):
        alice, _bob = await _conversation(tmp_path, nursery, net)
        out = tmp_path / "case.zip"
        await _export(alice, out, contact="bob")
    assert _verify(out).ok
    with zipfile.ZipFile(out) as archive:
        manifest = archive.read(bundle.MANIFEST_NAME)
        names = archive.namelist()
    bad = tmp_path / "bad.zip"

    def problems(make: Callable[[zipfile.ZipFile], None]) -> list[str]:
        with zipfile.ZipFile(bad, "w") as archive:
            make(archive)
        report = _verify(bad)
        bad.unlink()
        assert not report.ok
        return report.problems

    def copy(archive: zipfile.ZipFile, **members: bytes | None) -> None:
        with zipfile.ZipFile(out) as old:
            for name in names:
                data = members.get(name, old.read(name))
                if data is not None:
                    archive.writestr(name, data)
            for name, data in members.items():
                if name not in names and data is not None:
                    archive.writestr(name, data)

    edited = manifest.replace(b'"report', b'"REPORT', 1)
    assert edited != manifest
    assert problems(lambda a: copy(a, **{bundle.MANIFEST_NAME: edited})) == [
        "manifest: it does not match bundle.json (changed after the export)"
    ]
    # Its own claim, the export's time, is taken as it says.
    graph = json.loads(manifest)
    (action,) = (n for n in graph["@graph"] if n["@type"].endswith("InvestigativeAction"))
    action["uco-action:startTime"]["@value"] = "2031-01-02T03:04:05.678000Z"
    later = json.dumps(graph, indent=1).encode()
    assert later != manifest
    with zipfile.ZipFile(bad, "w") as archive:
        copy(archive, **{bundle.MANIFEST_NAME: later})
    assert _verify(bad).ok
    bad.unlink()
    assert problems(lambda a: copy(a, **{bundle.MANIFEST_NAME: None})) == [
        "manifest: the bundle has no manifest.jsonld"
    ]
    assert problems(lambda a: copy(a, **{bundle.MANIFEST_NAME: b"{}"})) == [
        "manifest: it is not the manifest an export writes"
    ]
    assert problems(lambda a: copy(a, **{"NOTES.txt": b"added later"})) == [
        "bundle: 'NOTES.txt' is no part of a bundle"
    ]
    # bundle.json reformatted, nothing in it changed: not the exported one.
    with zipfile.ZipFile(out) as archive:
        reformatted = json.dumps(json.loads(archive.read(bundle.BUNDLE_NAME))).encode()
    assert problems(lambda a: copy(a, **{bundle.BUNDLE_NAME: reformatted})) == [
        "manifest: it does not match bundle.json (changed after the export)"
    ]


async def test_an_export_where_nothing_can_be_written_says_so(
    tmp_path: Path, clock: MockClock
) -> None:
    """A directory the daemon cannot write in (/proc: not even root can) is a
    clear error, not an internal one; nothing is logged, the daemon goes on."""
    async with network(tmp_path) as (net, nursery):
        alice, _bob = await _conversation(tmp_path, nursery, net)
        size = alice.store.evidence.size()
        with pytest.raises(ConfigError, match=r"^cannot write in /proc: "):
            await _export(alice, Path("/proc/onionpost-case.zip"), contact="bob")
        assert alice.store.evidence.size() == size
        out = tmp_path / "case.zip"
        await _export(alice, out, contact="bob")
        assert _verify(out).ok


def test_log_verify_names_each_kind_of_damage(tmp_path: Path) -> None:
    from onionpost.proto.address import OnionAddress
    from onionpost.store import Store

    me = Identity(bytes(range(32)))
    witness = Witness(me)

    def fresh(name: str) -> Store:
        store = Store.open(tmp_path / name / "s.db", tmp_path / name / "files", bytes(32))
        bob = store.contacts.add_contact("bob", OnionAddress(os.urandom(32)), os.urandom(32), 1)
        for n in range(5):
            store.outbox.queue_text(bob.id, os.urandom(16), n, f"t{n}", "text/plain", None)
        store.evidence.checkpoint(witness.origin, witness.sign, 10)
        return store

    def damaged(name: str, sql: str, *args: object) -> api.LogReport:
        with fresh(name) as store:
            assert _evidence.verify_log(store, witness).ok
            with store.transaction():
                store.evidence._db.execute(sql, args)
            return _evidence.verify_log(store, witness)

    flipped = damaged(
        "flip", "UPDATE evidence SET entry = CAST(entry || x'00' AS BLOB) WHERE idx = 2"
    )
    assert any("entry 2" in p for p in flipped.problems)
    assert any("differ" in p for p in flipped.problems)
    dropped = damaged("drop", "DELETE FROM evidence WHERE idx = 3")
    assert any("entry 3 is missing" in p for p in dropped.problems)
    cut = damaged("cut", "DELETE FROM evidence WHERE idx >= 3")
    assert any("signed for 6 entries, the log has 3" in p for p in cut.problems)
    swapped = damaged(
        "swap",
        "UPDATE evidence SET entry = (SELECT entry FROM evidence WHERE idx = 4) WHERE idx = 1",
    )
    assert any("differ" in p for p in swapped.problems)
    other = Identity.generate()
    resigned = damaged(
        "resign",
        "UPDATE evidence_checkpoints SET note = ?",
        note.sign(
            note.Checkpoint(witness.origin, 6, bytes(32)).to_text(), str(other.address), other
        ).to_bytes(),
    )
    assert any("checkpoint:" in p for p in resigned.problems)


async def test_the_case_manifest_validates(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, _bob = await _conversation(tmp_path, nursery, net)
        out = tmp_path / "case.zip"
        await _export(alice, out, contact="bob")
    with zipfile.ZipFile(out) as archive:
        manifest = tmp_path / "manifest.jsonld"
        manifest.write_bytes(archive.read(bundle.MANIFEST_NAME))
    tool = shutil.which("case_validate", path=os.path.dirname(sys.executable)) or "case_validate"
    done = subprocess.run(
        [tool, str(manifest)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:]


async def test_verify_export_on_the_command_line(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, _bob = await _conversation(tmp_path, nursery, net)
        out = tmp_path / "case.zip"
        await _export(alice, out, contact="bob")
    runner = CliRunner()
    good = runner.invoke(main, ["verify-export", str(out)])
    assert good.exit_code == 0, good.output
    assert "ok" in good.output.splitlines()[-1]
    assert "It does not prove that a contact wrote" in good.output
    as_json = json.loads(runner.invoke(main, ["verify-export", str(out), "--json"]).stdout)
    assert as_json["ok"] is True
    assert as_json["messages"] == 6
    document = _document(out)
    document["messages"][0]["created_ms"] += 1  # type: ignore[index]
    bad = tmp_path / "bad.zip"
    _with_document(out, bad, document)
    refused = runner.invoke(main, ["verify-export", str(bad)])
    assert refused.exit_code == 1
    assert "PROBLEM message" in refused.output
    assert refused.output.splitlines()[-1] == "NOT OK"
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    broken = runner.invoke(main, ["verify-export", str(junk)])
    assert broken.exit_code == 1
    assert broken.output.count("\n") == 1
    assert "is not a bundle" in broken.output
