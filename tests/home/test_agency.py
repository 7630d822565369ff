"""An agency's offline directory (trust.md, home/_agency.py): sealed key files
(0600, the right secret only, not altered), root-init and endorse end to end."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from onionpost.errors import ConfigError, UnlockError
from onionpost.home import AgencyDirectory, KdfCost, KeySource, open_key_file, write_key_file
from onionpost.home._secrets import create_key_file
from onionpost.limits import MAX_DELEGATION_LIFETIME, MAX_ENDORSEMENT_LIFETIME
from onionpost.proto.identity import Identity
from onionpost.proto.trust import (
    HybridSigner,
    RevocationList,
    Status,
    check_endorsement,
    check_rotation,
    open_checkpoint,
    open_revocations,
)

T0 = 1_800_000_000
PASS = KeySource(passphrase="correct horse battery staple", kdf_cost=KdfCost.FLOOR)
ALICE = Identity(bytes(range(32)))


def test_a_key_file_opens_with_its_secret_only(tmp_path: Path) -> None:
    signer = HybridSigner.generate("acme/root")
    path = tmp_path / "root.key"
    write_key_file(path, signer, PASS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    opened = open_key_file(path, PASS)
    assert opened.public == signer.public
    assert "seed" not in repr(opened)
    with pytest.raises(UnlockError, match="wrong passphrase"):
        open_key_file(path, KeySource(passphrase="wrong", kdf_cost=KdfCost.FLOOR))
    key_file = tmp_path / "k"
    create_key_file(key_file)
    with pytest.raises(UnlockError, match="sealed with a passphrase"):
        open_key_file(path, KeySource(key_file=key_file))
    with pytest.raises(ConfigError, match="exists already"):
        write_key_file(path, signer, PASS)


def test_a_key_file_with_a_key_file_and_ed25519_only(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    create_key_file(key_file)
    source = KeySource(key_file=key_file)
    signer = HybridSigner.generate("acme/root", mldsa=False)
    write_key_file(tmp_path / "root.key", signer, source)
    assert open_key_file(tmp_path / "root.key", source).public == signer.public


def test_an_altered_or_exposed_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    write_key_file(path, HybridSigner.generate("acme/root"), PASS)
    document = json.loads(path.read_text())
    # Another name (the AD covers it), a cost below the floor, garbage.
    for change in (
        {"name": "acme/issuing/a"},
        {"kdf": {**document["kdf"], "opslimit": 1}},
        {"ciphertext": "00"},
        {"version": 2},
    ):
        path.write_text(json.dumps({**document, **change}))
        with pytest.raises(UnlockError):
            open_key_file(path, PASS)
    path.write_text("not json")
    with pytest.raises(UnlockError):
        open_key_file(path, PASS)
    path.write_text(json.dumps(document))
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError):
        open_key_file(path, PASS)


def test_root_init_then_endorse_gives_a_proof_that_checks(tmp_path: Path) -> None:
    where = tmp_path / "agency"
    directory, anchor = AgencyDirectory.create(where, "acme", PASS, now=T0)
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    assert stat.S_IMODE((where / "root.key").stat().st_mode) == 0o600
    assert directory.anchor() == anchor
    issuer = directory.issuer(PASS)
    proof = directory.endorse(issuer, str(ALICE.address), endpoint="Field office 3", now=T0)
    assert proof.index == 1
    revocations = RevocationList("acme", 1, T0)
    verdict = check_endorsement(
        anchor, proof.encode(), address=str(ALICE.address), revocations=revocations, now=T0 + 60
    )
    assert verdict.status is Status.ENDORSED
    # A rotation to a new address, named as replacing the old one.
    new = Identity(bytes(range(1, 33)))
    moved = directory.endorse(
        issuer, str(new.address), endpoint="Field office 3", now=T0, replaces=str(ALICE.address)
    )
    assert moved.index == 2
    new_verdict = check_endorsement(
        anchor, moved, address=str(new.address), revocations=revocations, now=T0 + 60
    )
    assert verdict.endorsement is not None
    rotation = check_rotation(verdict.endorsement, new_verdict, moved.endorsement)
    assert rotation.new_address == str(new.address)
    assert len(directory.statements()) == 3


def test_bad_input_to_root_init_and_endorse(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="agency name"):
        AgencyDirectory.create(tmp_path / "x", "Not An Agency", PASS, now=T0)
    where = tmp_path / "agency"
    directory, _ = AgencyDirectory.create(where, "acme", PASS, now=T0)
    with pytest.raises(ConfigError, match="not empty"):
        AgencyDirectory.create(where, "acme", PASS, now=T0)
    issuer = directory.issuer(PASS)
    before = directory.statements()
    for address, changes, problem in (
        ("not-an-address", {}, "onion address"),
        (str(ALICE.address), {"days": 31}, "1 to 30 days"),
        (str(ALICE.address), {"now": T0 + 89 * 86_400}, "ends .* fewer --days"),
        (str(ALICE.address), {"endpoint": ""}, "name"),
    ):
        fields: dict[str, object] = {"endpoint": "Field office 3", "now": T0, **changes}
        with pytest.raises(ConfigError, match=problem):
            directory.endorse(issuer, address, **fields)  # type: ignore[arg-type]
    other = HybridSigner.generate("acme/issuing/a")
    with pytest.raises(ConfigError, match="not the one the root delegated"):
        directory.endorse(other, str(ALICE.address), endpoint="x", now=T0)
    assert directory.statements() == before


def test_revoke_signs_the_next_list_keeps_live_entries_and_logs_it(tmp_path: Path) -> None:
    directory, anchor = AgencyDirectory.create(tmp_path / "agency", "acme", PASS, now=T0)
    issuer = directory.issuer(PASS)
    bob = Identity(bytes(range(1, 33)))
    assert directory.revocations() is None
    first = directory.revoke(issuer, str(ALICE.address), reason="seized", now=T0)
    opened = open_revocations(anchor, first.delegation, first.revocations, now=T0).value
    assert (opened.serial, [e.address for e in opened.revoked]) == (1, [str(ALICE.address)])
    # Revoked again: the same entry, its first time kept.
    second = directory.revoke(issuer, str(ALICE.address), reason="again", now=T0 + 10)
    listed = directory.revocations()
    assert listed is not None
    assert (listed.serial, listed.revoked[0].revoked_at, listed.revoked[0].reason) == (
        2,
        T0,
        "seized",
    )
    # Once every endorsement of it has expired, an entry leaves the list.
    late = T0 + MAX_ENDORSEMENT_LIFETIME + 1
    third = directory.revoke(issuer, str(bob.address), now=late)
    opened = open_revocations(anchor, third.delegation, third.revocations, now=late).value
    assert (opened.serial, [e.address for e in opened.revoked]) == (3, [str(bob.address)])
    # Each list is a statement of the log, and its checkpoint covers it.
    assert directory.statements()[-3:] == [first.revocations, second.revocations, third.revocations]
    checkpoint = open_checkpoint(anchor, issuer.public, third.checkpoint).checkpoint
    assert checkpoint.size == len(directory.statements())
    with pytest.raises(ConfigError, match="onion address"):
        directory.revoke(issuer, "nope", now=late)
    with pytest.raises(ConfigError, match="cannot sign that list"):
        directory.revoke(issuer, str(ALICE.address), reason="r" * 65, now=late)
    with pytest.raises(ConfigError, match="does not cover that time"):
        directory.revoke(issuer, None, now=T0 + MAX_DELEGATION_LIFETIME + 1)
    assert directory.revocations() == opened  # nothing signed by the refusals
