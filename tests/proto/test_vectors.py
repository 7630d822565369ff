"""Public Noise vectors, onionpost's hybrid vectors, and the selftest command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from onionpost.proto.selftest import run_self_test
from onionpost.proto.vectors import iter_vectors, replay_vector
from tools import vectorgen

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "noise-vectors"
PUBLIC_FILES = sorted(SHARED.glob("*.json"))
HFS_FILE = ROOT / "protocol-spec" / "vectors" / vectorgen.HFS_FILE


def _load(path: Path) -> list[dict[str, object]]:
    return [dict(v) for v in iter_vectors(json.loads(path.read_text()))]


PUBLIC = [(p.name, i, v) for p in PUBLIC_FILES for i, v in enumerate(_load(p))]


def test_all_fifty_public_vectors_are_present() -> None:
    assert len(PUBLIC) == 50


@pytest.mark.parametrize(
    "vector", [v for _, _, v in PUBLIC], ids=[f"{f}[{i}]" for f, i, _ in PUBLIC]
)
def test_public_vector_replays_byte_exactly(vector: dict[str, object]) -> None:
    outcome = replay_vector(vector)
    assert outcome.passed, outcome.detail


@pytest.mark.parametrize("vector", _load(HFS_FILE), ids=lambda v: str(v["protocol_name"]))
def test_hybrid_vector_replays(vector: dict[str, object]) -> None:
    outcome = replay_vector(vector)
    assert outcome.passed, outcome.detail


def test_hybrid_vectors_are_what_the_generator_makes() -> None:
    on_disk = json.loads(HFS_FILE.read_text())
    assert vectorgen.build(on_disk) == on_disk


def test_a_tampered_vector_fails_and_says_where() -> None:
    vector = dict(PUBLIC[0][2])
    messages = [dict(m) for m in vector["messages"]]  # type: ignore[union-attr]
    ciphertext = bytearray(bytes.fromhex(messages[3]["ciphertext"]))
    ciphertext[-1] ^= 1
    messages[3]["ciphertext"] = ciphertext.hex()
    vector["messages"] = messages
    outcome = replay_vector(vector)
    assert not outcome.passed
    assert "message 3" in outcome.detail


def test_a_wrong_handshake_hash_fails() -> None:
    vector = next(dict(v) for _, _, v in PUBLIC if v.get("handshake_hash"))
    vector["handshake_hash"] = "00" * 64
    assert replay_vector(vector).detail == "handshake hash differs"


def test_a_malformed_vector_is_a_failure_not_a_crash() -> None:
    outcome = replay_vector({"protocol_name": "Noise_ZZ_25519_ChaChaPoly_SHA256", "messages": []})
    assert not outcome.passed
    assert "ConfigError" in outcome.detail
    assert not replay_vector({"messages": [{"payload": "zz"}]}).passed


def test_builtin_self_test_passes() -> None:
    results = run_self_test()
    assert len(results) >= 7
    assert [name for name, reason in results if reason is not None] == []


def _selftest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onionpost", "selftest", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_selftest_cli_replays_the_public_vectors() -> None:
    result = _selftest("--vectors", *map(str, PUBLIC_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "50 passed, 0 failed"


def test_selftest_cli_names_each_failed_vector(tmp_path: Path) -> None:
    vectors = _load(PUBLIC_FILES[0])[:3]
    broken = json.loads(json.dumps(vectors))
    broken[1]["messages"][0]["ciphertext"] = "00" + broken[1]["messages"][0]["ciphertext"][2:]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"vectors": broken}))
    result = _selftest("--vectors", str(path), str(tmp_path / "missing.json"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-1] == "2 passed, 2 failed"
    assert any(f"broken.json[1] {broken[1]['protocol_name']}" in line for line in lines)
    assert any("missing.json: cannot read vectors" in line for line in lines)
