"""On the private Tor network: a home put back to an earlier copy is caught
at its next session with a contact that cosigned later (evidence.md §5.3),
and an export of the conversation verifies offline."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onionpost.proto import bundle
from onionpost.testing.endpoint import Endpoint
from onionpost.testing.testnet import Testnet

pytestmark = pytest.mark.tor

DELIVERY_SECONDS = 300


def _wait(predicate: Any, what: str, seconds: float = DELIVERY_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def _delivered(endpoint: Endpoint, message_id: str) -> bool:
    return endpoint.json("message", message_id)["state"] in {"delivered", "read"}


def _witnessed_size(endpoint: Endpoint, contact: str) -> int:
    report = endpoint.json("log", "verify")
    return max((w["size"] for w in report["witnesses"] if w["contact"] == contact), default=0)


def _log_size(endpoint: Endpoint) -> int:
    return int(endpoint.json("log", "show", "--limit", "1")["size"])


def _store_files(endpoint: Endpoint) -> list[Path]:
    return [p for p in endpoint.home.iterdir() if p.name.startswith("store.sqlite")]


@pytest.fixture(scope="module")
def pair(testnet: Testnet) -> Iterator[tuple[Endpoint, Endpoint]]:
    root = Path(tempfile.mkdtemp(prefix="op-evidence-", dir="/tmp"))
    alice = Endpoint(root, "alice", testnet)
    bob = Endpoint(root, "bob", testnet)
    try:
        alice.start()
        bob.start()
        alice.cli("contact", "add", bob.json("whoami")["card"])
        bob.cli("contact", "add", alice.json("whoami")["card"])
        yield alice, bob
    finally:
        alice.stop()
        bob.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_home_put_back_is_caught_and_an_export_verifies(
    pair: tuple[Endpoint, Endpoint], tmp_path: Path
) -> None:
    alice, bob = pair
    first = alice.json("send", "bob", "before the copy")["id"]
    _wait(lambda: _delivered(alice, first), "the first text")
    alice.terminate()
    backup = tmp_path / "backup"
    backup.mkdir()
    for f in _store_files(alice):
        shutil.copy2(f, backup / f.name)
    alice.start()
    later = [alice.json("send", "bob", f"after the copy {i}")["id"] for i in range(3)]
    _wait(lambda: all(_delivered(alice, i) for i in later), "the later texts")
    size = _log_size(alice)
    # A new session: bob cosigns the log with the later texts in it.
    alice.terminate()
    alice.start()
    nudge = alice.json("send", "bob", "nudge")["id"]
    _wait(lambda: _delivered(alice, nudge), "the nudge")
    _wait(lambda: _witnessed_size(alice, "bob") >= size, "bob's cosignature")

    out = tmp_path / "case.zip"
    alice.json("export", "--contact", "bob", "--out", str(out))
    checked = alice.cli("verify-export", str(out), "--json", check=False)
    assert checked.returncode == 0, checked.stdout
    with zipfile.ZipFile(out) as archive:
        report = bundle.verify(archive)
    assert report.ok
    assert report.messages == 5
    assert report.witnesses

    alice.terminate()
    for f in _store_files(alice):
        f.unlink()
    for f in backup.iterdir():
        shutil.copy2(f, alice.home / f.name)
    alice.start()
    restored = alice.json("send", "bob", "from the restored home")["id"]
    _wait(lambda: _delivered(alice, restored), "a text from the restored home")
    _wait(lambda: alice.json("status")["evidence_alarms"] >= 1, "alice's alarm", 120)
    _wait(lambda: bob.json("status")["evidence_alarms"] >= 1, "bob's alarm", 120)
    verdict = alice.cli("log", "verify", check=False)
    assert verdict.returncode == 1
    assert "ALARM rollback" in verdict.stdout
    seen = json.loads(bob.cli("log", "verify", "--json", check=False).stdout)
    kinds = [a["kind"] for a in seen["alarms"]]
    assert kinds == ["contact-rollback"]
