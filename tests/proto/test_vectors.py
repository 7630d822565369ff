"""Public Noise vectors, onionpost's hybrid vectors, and the selftest command.

The shared public files hold the interactive patterns only; the one-way
patterns of the same cacophony file (N, K, X and their psk variants, Noise
§7.4) are kept in ``tests/proto/vectors/noise-oneway.json`` and replayed
both through our code and through the ``noiseprotocol`` package.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from noise.connection import Keypair, NoiseConnection

from onionpost.proto.selftest import run_self_test
from onionpost.proto.vectors import iter_vectors, replay_vector
from tools import vectorgen

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "noise-vectors"
PUBLIC_FILES = sorted(SHARED.glob("*.json"))
HFS_FILE = ROOT / "protocol-spec" / "vectors" / vectorgen.HFS_FILE
ONE_WAY_FILE = Path(__file__).resolve().parent / "vectors" / "noise-oneway.json"


def _load(path: Path) -> list[dict[str, object]]:
    return [dict(v) for v in iter_vectors(json.loads(path.read_text()))]


PUBLIC = [(p.name, i, v) for p in PUBLIC_FILES for i, v in enumerate(_load(p))]


ONE_WAY = _load(ONE_WAY_FILE)


def test_all_fifty_public_vectors_are_present() -> None:
    assert len(PUBLIC) == 50


def test_the_one_way_vectors_cover_n_k_x_and_their_psk_variants() -> None:
    names = {str(v["protocol_name"]) for v in ONE_WAY}
    assert names == {
        f"Noise_{pattern}_25519_ChaChaPoly_{hash_name}"
        for pattern in ("N", "K", "X", "Npsk0", "Kpsk0", "Xpsk1")
        for hash_name in ("BLAKE2b", "SHA256")
    }
    assert all(len(v["messages"]) > 1 for v in ONE_WAY)  # type: ignore[arg-type]


@pytest.mark.parametrize("vector", ONE_WAY, ids=lambda v: str(v["protocol_name"]))
def test_one_way_vector_replays_byte_exactly(vector: dict[str, object]) -> None:
    outcome = replay_vector(vector)
    assert outcome.passed, outcome.detail


def _replay_with_noiseprotocol(vector: Mapping[str, Any]) -> None:
    """The vector through the ``noiseprotocol`` package: every message from the initiator."""
    sides = []
    for prefix in ("init", "resp"):
        conn = NoiseConnection.from_name(vector["protocol_name"].encode("ascii"))
        if prefix == "init":
            conn.set_as_initiator()
        else:
            conn.set_as_responder()
        conn.set_prologue(bytes.fromhex(vector[f"{prefix}_prologue"]))
        if vector.get(f"{prefix}_psks"):
            conn.set_psks(psks=[bytes.fromhex(p) for p in vector[f"{prefix}_psks"]])
        for field, keypair in (("static", Keypair.STATIC), ("ephemeral", Keypair.EPHEMERAL)):
            if vector.get(f"{prefix}_{field}"):
                private = bytes.fromhex(vector[f"{prefix}_{field}"])
                conn.set_keypair_from_private_bytes(keypair, private)
        if vector.get(f"{prefix}_remote_static"):
            public = bytes.fromhex(vector[f"{prefix}_remote_static"])
            conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, public)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # injected ephemerals are "for testing only"
            conn.start_handshake()
        sides.append(conn)
    initiator, responder = sides
    first, *transport = vector["messages"]
    payload, ciphertext = bytes.fromhex(first["payload"]), bytes.fromhex(first["ciphertext"])
    assert bytes(initiator.write_message(payload)) == ciphertext
    assert bytes(responder.read_message(ciphertext)) == payload
    assert initiator.handshake_finished
    assert responder.handshake_finished
    expected_hash = bytes.fromhex(vector["handshake_hash"])
    assert bytes(initiator.get_handshake_hash()) == expected_hash
    assert bytes(responder.get_handshake_hash()) == expected_hash
    for message in transport:
        payload = bytes.fromhex(message["payload"])
        ciphertext = bytes.fromhex(message["ciphertext"])
        assert bytes(initiator.encrypt(payload)) == ciphertext
        assert bytes(responder.decrypt(ciphertext)) == payload


@pytest.mark.parametrize("vector", ONE_WAY, ids=lambda v: str(v["protocol_name"]))
def test_one_way_vector_replays_through_noiseprotocol(vector: dict[str, object]) -> None:
    # The independent check the file's provenance names.
    _replay_with_noiseprotocol(vector)


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
