"""`log verify` and evidence bundles: a conversation with a file exported and
verified offline, and every kind of tampering refused, naming what failed."""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner
from trio.testing import MockClock

from onionpost import api
from onionpost.cli import main
from onionpost.daemon import _evidence
from onionpost.daemon.delivery import Witness
from onionpost.errors import ConfigError, VerificationError
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
        # The export is itself in the log, naming the bundle.json that
        # bundle.sig signs as a whole.
        last = Entry.decode(alice.store.evidence.entries(alice.store.evidence.size() - 1, 1)[0][1])
        assert last.event is Event.EXPORTED
        assert json.loads(last.detail)["bundle_sha256"] == report.bundle_sha256 != ""
        with zipfile.ZipFile(out) as archive:
            document = json.loads(archive.read(bundle.BUNDLE_NAME))
            names = set(archive.namelist())
        assert document["format"] == "onionpost-evidence/2"
        files = {m["member"] for m in document["messages"] if m["kind"] == "file"}
        assert names == {bundle.BUNDLE_NAME, bundle.SIGNATURE_NAME, bundle.MANIFEST_NAME} | files
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


_NOT_SIGNED = (
    "bundle.sig: bundle.json is not the one the endpoint signed: "
    "part of the export was left out or changed"
)
_UNSIGNED_FORMAT = (
    "bundle: onionpost-evidence/1 is not signed as a whole, "
    "so a subset of an export verifies as well"
)


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

    # A file swapped for another: one line, naming its message and what is
    # wrong (not also "no part of a bundle": its message names it).
    file_message = next(m for m in good["messages"] if m["kind"] == "file")  # type: ignore[union-attr]
    _rewrite(out, bad, **{file_message["member"]: b"not the scan"})  # type: ignore[index]
    assert _verify(bad).problems == [
        f"message {file_message['id']}: the file's bytes do not match its entry"  # type: ignore[index]
    ]


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
        _NOT_SIGNED,
        "manifest: it does not match bundle.json (changed after the export)",
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
    digest = as_json["bundle_sha256"]
    assert f"bundle.json: SHA-256 {digest}, signed as a whole by the endpoint's key" in (
        good.output.splitlines()
    )
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


def _forge(src: Path, dest: Path, document: Any, **members: bytes | None) -> None:
    """What the user did: bundle.json edited and written as an export writes
    it, manifest.jsonld rebuilt from it with the library's own function (it
    is derived from bundle.json and unsigned, its time and version kept),
    the files its messages still name kept, ``members`` put in (None: left
    out)."""
    raw = json.dumps(document, indent=1, sort_keys=True).encode()
    messages = [bundle.BundleMessage.from_json(m) for m in document["messages"]]
    with zipfile.ZipFile(src) as old:
        graph = json.loads(old.read(bundle.MANIFEST_NAME))["@graph"]
        sha256 = {
            m.id: hashlib.sha256(old.read(m.member)).hexdigest() for m in messages if m.member
        }
        kept = {name: old.read(name) for name in old.namelist()}
    (tool,) = (n for n in graph if n["@type"] == "uco-tool:Tool")
    (action,) = (n for n in graph if n["@type"].endswith("InvestigativeAction"))
    made = datetime.datetime.fromisoformat(
        action["uco-action:startTime"]["@value"].replace("Z", "+00:00")
    )
    manifest = bundle.case_manifest(
        endpoint=document["endpoint"],
        messages=messages,
        file_sha256=sha256,
        made_ms=round(made.timestamp() * 1000),
        version=tool["uco-tool:version"],
        bundle_id=hashlib.sha256(raw).hexdigest()[:32],
    )
    named = {m.member for m in messages if m.member}
    kept = {n: d for n, d in kept.items() if not n.startswith("files/") or n in named}
    kept |= {bundle.BUNDLE_NAME: raw, bundle.MANIFEST_NAME: manifest} | members  # type: ignore[operator]
    with zipfile.ZipFile(dest, "w") as new:
        for name, data in kept.items():
            if data is not None:
                new.writestr(name, data)


def _cut_down(good: Any) -> Any:
    """The user's trial: one message (the file) and its entries removed, every
    witness's cosignature removed, the selection rewritten to match."""
    cut = json.loads(json.dumps(good))
    victim = next(m for m in cut["messages"] if m["kind"] == "file")
    cut["messages"].remove(victim)
    cut["entries"] = [
        e
        for e in cut["entries"]
        if Entry.decode(base64.b64decode(e["entry"])).message_id.hex() != victim["id"]
    ]
    cut["witnesses"] = []
    cut["selection"] = {"contact": None, "since_ms": None, "until_ms": None, "group": None}
    cut["selection"]["ids"] = [m["id"] for m in cut["messages"]]
    return cut


async def test_an_export_cut_down_or_changed_is_refused_by_its_signature(
    tmp_path: Path, clock: MockClock
) -> None:
    """bundle.sig signs the whole of bundle.json: a bundle cut down and given a
    manifest rebuilt by the library's own code (which passes every other
    check) is refused, naming the signature; so is each change alone."""
    async with network(tmp_path) as (net, nursery):
        alice, bob = await _conversation(tmp_path, nursery, net)
        out, one = tmp_path / "case.zip", tmp_path / "one.zip"
        await _export(alice, out, contact="bob")
        await _export(alice, one, ids=(alice.inbox_from(bob)[0].id.hex(),))
    good = _document(out)
    bad = tmp_path / "bad.zip"

    def verdict(document: Any, **members: bytes | None) -> list[str]:
        _forge(out, bad, document, **members)
        report = _verify(bad)
        bad.unlink()
        return report.problems

    # The forgery itself is faithful: the document unchanged gives the export back.
    assert verdict(good) == []
    cut = _cut_down(good)
    assert len(cut["messages"]) == len(good["messages"]) - 1  # type: ignore[arg-type]
    assert verdict(cut) == [_NOT_SIGNED]
    no_witnesses = json.loads(json.dumps(good)) | {"witnesses": []}
    assert verdict(no_witnesses) == [_NOT_SIGNED]
    selection = json.loads(json.dumps(good))
    selection["selection"]["contact"] = "carol"
    assert verdict(selection) == [_NOT_SIGNED]
    fewer = json.loads(json.dumps(good))
    del fewer["messages"][0]
    assert verdict(fewer) == [_NOT_SIGNED]
    # The signature of another export by the same endpoint signs another bundle.json.
    with zipfile.ZipFile(one) as archive:
        theirs = archive.read(bundle.SIGNATURE_NAME)
    assert verdict(good, **{bundle.SIGNATURE_NAME: theirs}) == [_NOT_SIGNED]
    # Left out, or not a note.
    assert verdict(cut, **{bundle.SIGNATURE_NAME: None}) == [
        "bundle.sig: the bundle has no bundle.sig"
    ]
    assert verdict(good, **{bundle.SIGNATURE_NAME: b"signed, honest\n"}) == [
        "bundle.sig: a note has no signatures"
    ]
    # On the command line: one PROBLEM line, exit 1.
    _forge(out, bad, cut)
    refused = CliRunner().invoke(main, ["verify-export", str(bad)])
    assert refused.exit_code == 1
    assert f"PROBLEM {_NOT_SIGNED}" in refused.output.splitlines()
    assert refused.output.splitlines()[-1] == "NOT OK"
    assert "signed as a whole" not in refused.output


async def test_only_the_endpoint_s_export_signature_is_taken(
    tmp_path: Path, clock: MockClock
) -> None:
    """bundle.sig must be the endpoint's key's signature, under its own origin:
    another endpoint's signature of the same statement is refused, and so is
    the endpoint's own signature of a checkpoint (and an export's signature
    offered as the checkpoint)."""
    async with network(tmp_path) as (net, nursery):
        alice, _bob = await _conversation(tmp_path, nursery, net)
        out = tmp_path / "case.zip"
        await _export(alice, out, contact="bob")
    good = _document(out)
    with zipfile.ZipFile(out) as archive:
        raw = archive.read(bundle.BUNDLE_NAME)
        signed = archive.read(bundle.SIGNATURE_NAME)
    name = str(alice.address)
    statement = bundle.export_statement(name, raw)
    assert note.Note.parse(signed).text == statement
    assert statement.startswith(f"{name}/export\nonionpost-evidence/2\nsha256 ")
    bad = tmp_path / "bad.zip"

    def problems(**members: bytes) -> list[str]:
        _rewrite(out, bad, **members)
        report = _verify(bad)
        bad.unlink()
        return report.problems

    other = Identity.generate()
    for forged in (
        note.sign(statement, str(other.address), other),  # its own name
        note.sign(statement, name, other),  # the endpoint's name, another key
    ):
        assert problems(**{bundle.SIGNATURE_NAME: forged.to_bytes()}) == [
            "bundle.sig: no signature from a known key"
        ]
    # The endpoint's own key, under the checkpoints' origin.
    mine = alice.secrets.identity
    as_checkpoint = statement.replace(f"{name}/export", f"{name}/evidence", 1)
    for wrong in (
        note.sign(as_checkpoint, name, mine).to_bytes(),
        str(good["checkpoint"]).encode(),
    ):
        assert problems(**{bundle.SIGNATURE_NAME: wrong}) == [
            f"bundle.sig: not the signature of an export (its origin is not {name}/export)"
        ]
    # ... and the export's signature is no checkpoint.
    swapped = json.loads(json.dumps(good)) | {"checkpoint": signed.decode()}
    report_problems = problems(**{bundle.BUNDLE_NAME: json.dumps(swapped).encode()})
    assert len(report_problems) == 1
    assert report_problems[0].startswith("checkpoint: ")


async def test_a_bundle_of_the_first_format_says_it_is_not_signed_as_a_whole(
    tmp_path: Path, clock: MockClock
) -> None:
    """onionpost-evidence/1 had no bundle.sig: its other checks run as before,
    and one problem says that a subset of an export verifies as well."""
    async with network(tmp_path) as (net, nursery):
        alice, _bob = await _conversation(tmp_path, nursery, net)
        out = tmp_path / "case.zip"
        await _export(alice, out, contact="bob")
    first = json.loads(json.dumps(_document(out))) | {"format": "onionpost-evidence/1"}
    old = tmp_path / "old.zip"
    _forge(out, old, first, **{bundle.SIGNATURE_NAME: None})
    report = _verify(old)
    assert report.problems == [_UNSIGNED_FORMAT]
    assert (report.messages, report.files_checked, len(report.witnesses)) == (6, 1, 1)
    assert report.bundle_sha256 == ""
    # A subset of it verifies as well: only that problem says so.
    cut = _cut_down(first)
    _forge(out, old, cut, **{bundle.SIGNATURE_NAME: None})
    assert _verify(old).problems == [_UNSIGNED_FORMAT]
    # The other checks still run: a change is found beside it.
    changed = json.loads(json.dumps(first))
    next(m for m in changed["messages"] if m["kind"] == "text")["body"] = "report 9"
    _forge(out, old, changed, **{bundle.SIGNATURE_NAME: None})
    problems = _verify(old).problems
    assert problems[0] == _UNSIGNED_FORMAT
    assert any("changed after it was logged" in p for p in problems[1:])
    refused = CliRunner().invoke(main, ["verify-export", str(old)])
    assert refused.exit_code == 1
    assert f"PROBLEM {_UNSIGNED_FORMAT}" in refused.output.splitlines()


async def test_a_malformed_bundle_json_gives_a_sentence_for_each_part(
    tmp_path: Path, clock: MockClock
) -> None:
    """Any field of bundle.json missing, or of the wrong type, is a problem
    line that names it: never a KeyError's or TypeError's text, never a
    traceback."""
    async with network(tmp_path) as (net, nursery):
        alice, _bob = await _conversation(tmp_path, nursery, net)
        out = tmp_path / "case.zip"
        await _export(alice, out, contact="bob")
    good = _document(out)
    with zipfile.ZipFile(out) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}

    def problems(document: Any) -> list[str]:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(bundle.BUNDLE_NAME, json.dumps(document))
            for name, data in members.items():
                if name != bundle.BUNDLE_NAME:
                    archive.writestr(name, data)
        with zipfile.ZipFile(buffer) as archive:
            try:
                return bundle.verify(archive).problems
            except VerificationError as exc:
                return [f"refused: {exc}"]

    def changed(path: tuple[str | int, ...], value: object) -> Any:
        document = json.loads(json.dumps(good))
        *parents, last = path
        place = document
        for key in parents:
            place = place[key]
        if value is _ABSENT:
            del place[last]
        else:
            place[last] = value
        return document

    def first(document: Any) -> str:
        """The first problem after the signature's (bundle.json was changed)."""
        found = problems(document)
        assert found[0] == _NOT_SIGNED
        return found[1]

    # The user's example, and one of each kind.
    assert first(changed(("entries", 0), {"a": 1})) == "entry 0: not an entry: no 'index'"
    assert first(changed(("entries", 0, "index"), "3")) == "entry 0: 'index' is not a whole number"
    assert (
        first(changed(("entries", 0, "entry"), "not base64!")) == "entry 0: 'entry' is not base64"
    )
    assert (
        first(changed(("entries", 0, "proof"), ["zz"]))
        == "entry 0: 'proof' is not a list of hashes"
    )
    assert first(changed(("witnesses", 0), [])) == "witness 0: not a witness: not a JSON object"
    assert (
        first(changed(("witnesses", 0, "checkpoint"), _ABSENT))
        == "witness 0: not a witness: no 'checkpoint'"
    )
    text = next(n for n, m in enumerate(good["messages"]) if m["kind"] == "text")  # type: ignore[arg-type,index]
    text_id = good["messages"][text]["id"]  # type: ignore[index]
    assert (
        first(changed(("messages", text, "body"), _ABSENT))
        == f"message {text_id}: not a message: no 'body'"
    )
    assert (
        first(changed(("messages", text), {"id": 5}))
        == f"message #{text}: not a message: no 'direction'"
    )
    assert (
        first(changed(("messages", text, "created_ms"), "soon"))
        == f"message {text_id}: 'created_ms' is not a whole number"
    )
    file = next(n for n, m in enumerate(good["messages"]) if m["kind"] == "file")  # type: ignore[arg-type,index]
    file_id = good["messages"][file]["id"]  # type: ignore[index]
    assert (
        first(changed(("messages", file, "member"), bundle.MANIFEST_NAME))
        == f"message {file_id}: its file's member is not 'files/{file_id}'"
    )
    assert problems(changed(("endpoint",), _ABSENT)) == ["refused: bundle.json: no 'endpoint'"]
    # Every field and element, missing or of every wrong type.
    places: list[tuple[str | int, ...]] = [(key,) for key in good]
    for key in ("witnesses", "entries", "messages"):
        items = good[key]
        assert isinstance(items, list)
        for n in {0, file} if key == "messages" else {0}:
            places.append((key, n))
            places += [(key, n, field) for field in items[n]]
    bare = re.compile(r"^[\w.]+( [\w#]+)?: '[^']*'$")  # a KeyError's text after the prefix
    for place in places:
        for value in (_ABSENT, None, True, -1, 2**64, 1.5, "x", "\ud800", [], {}, {"a": 1}, [1]):
            for problem in problems(changed(place, value)):
                assert not bare.match(problem), (place, value, problem)
                assert "Error" not in problem, (place, value, problem)


_ABSENT = object()
