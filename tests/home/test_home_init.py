"""init_home, unlock and save_secrets: the sealed secrets file and the home's layout."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Final

import pytest

from onionpost.errors import ConfigError, UnlockError
from onionpost.home import (
    HOME_ENV,
    ContactCard,
    KdfCost,
    Paths,
    Secrets,
    create_key_file,
    default_home,
    init_home,
    load_config,
    read_card_file,
    read_key_file,
    save_secrets,
    unlock,
)
from onionpost.home._secrets import KDF_MEMLIMIT_FLOOR, KDF_OPSLIMIT_FLOOR
from onionpost.proto.identity import StaticKey
from onionpost.store import _crypto

NOW = 1_700_000_000


#: Tests seal passphrases at the floor, explicitly (no environment switch).
FAST: Final = KdfCost.FLOOR


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths.for_home(tmp_path / "home")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_paths_derive_from_the_home(tmp_path: Path) -> None:
    paths = Paths.for_home(tmp_path)
    assert paths.config == tmp_path / "config.toml"
    assert paths.secrets == tmp_path / "secrets.json"
    assert paths.card == tmp_path / "card.txt"
    assert paths.store == tmp_path / "store.sqlite"
    assert paths.socket == tmp_path / "run" / "control.sock"
    assert paths.lock == tmp_path / "run" / "daemon.lock"


def test_default_home_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "h"))
    assert default_home() == tmp_path / "h"
    monkeypatch.delenv(HOME_ENV)
    assert default_home().name == "onionpost"


def test_init_with_a_passphrase_makes_a_complete_private_home(paths: Paths) -> None:
    secrets = init_home(
        paths,
        display_name="Alice",
        passphrase="correct horse",
        key_file=None,
        now=NOW,
        kdf_cost=FAST,
    )
    for directory in (paths.home, paths.files, paths.tor, paths.run):
        assert directory.is_dir()
        assert _mode(directory) == 0o700, directory
    assert _mode(paths.secrets) == 0o600
    assert _mode(paths.config) == 0o600
    assert _mode(paths.card) == 0o644
    # No temporary files are left behind by the atomic writes.
    assert sorted(p.name for p in paths.home.iterdir()) == [
        "card.txt",
        "config.toml",
        "files",
        "run",
        "secrets.json",
        "tor",
    ]
    card = read_card_file(paths.card)
    assert card.address == secrets.identity.address
    assert card.client_auth_public == secrets.client_auth_public
    assert card.name == "Alice"
    assert load_config(paths) == load_config(Paths.for_home(paths.home / "nowhere"))

    again = unlock(paths, passphrase="correct horse", key_file=None)
    assert again.identity.seed == secrets.identity.seed
    assert again.client_auth_private == secrets.client_auth_private
    assert again.client_auth_public == secrets.client_auth_public
    assert again.static.keypair == secrets.static.keypair
    assert again.static.certificate == secrets.static.certificate
    assert again.store_key == secrets.store_key
    assert again.display_name == "Alice"


def test_the_secrets_file_format(paths: Paths) -> None:
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST)
    document = json.loads(paths.secrets.read_text())
    assert set(document) == {"version", "kdf", "nonce", "ciphertext"}
    assert document["version"] == 1
    kdf = document["kdf"]
    assert kdf["alg"] == "argon2id"
    # The floor the test asked for: libsodium's INTERACTIVE limits.
    assert (kdf["opslimit"], kdf["memlimit"]) == (2, 64 * 2**20)
    assert len(bytes.fromhex(kdf["salt"])) == 16
    assert len(bytes.fromhex(document["nonce"])) == 24
    assert len(bytes.fromhex(document["ciphertext"])) > 16


def test_the_product_cost_is_moderate_and_no_environment_lowers_it(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert KdfCost.MODERATE.value == (3, 256 * 2**20)
    assert KdfCost.FLOOR.value == (KDF_OPSLIMIT_FLOOR, KDF_MEMLIMIT_FLOOR) == (2, 64 * 2**20)
    monkeypatch.setenv("ONIONPOST_KDF_FAST", "1")  # the old switch: ignored now
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW)
    kdf = json.loads(paths.secrets.read_text())["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == KdfCost.MODERATE.value


@pytest.mark.parametrize(("opslimit", "memlimit"), [(1, 64 * 2**20), (2, 32 * 2**20), (1, 8192)])
def test_unlocking_refuses_a_cost_below_the_floor(
    paths: Paths, opslimit: int, memlimit: int
) -> None:
    # A file sealed (validly, under its own parameters) below the floor: an
    # attacker who can write the home must not make the passphrase cheaper.
    secrets = Secrets.generate("Alice", now=NOW)
    salt = os.urandom(_crypto.SALT_LEN)
    kdf = {"alg": "argon2id", "opslimit": opslimit, "memlimit": memlimit, "salt": salt.hex()}
    key = _crypto.derive_key(b"pw", salt, opslimit=opslimit, memlimit=memlimit)
    canonical = json.dumps(kdf, sort_keys=True, separators=(",", ":")).encode()
    sealed = _crypto.seal(key, secrets._to_plaintext(), b"onionpost secrets v1\x00" + canonical)
    paths.home.mkdir(parents=True)
    paths.secrets.write_text(
        json.dumps(
            {
                "version": 1,
                "kdf": kdf,
                "nonce": sealed[:24].hex(),
                "ciphertext": sealed[24:].hex(),
            }
        )
    )
    with pytest.raises(UnlockError, match="below the floor"):
        unlock(paths, passphrase="pw", key_file=None)


def test_wrong_passphrase_is_an_unlock_error(paths: Paths) -> None:
    init_home(
        paths, display_name="Alice", passphrase="right", key_file=None, now=NOW, kdf_cost=FAST
    )
    with pytest.raises(UnlockError, match="wrong passphrase") as caught:
        unlock(paths, passphrase="wrong", key_file=None)
    assert "right" not in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_init_with_a_key_file_creates_it_0600(paths: Paths, tmp_path: Path) -> None:
    key_file = tmp_path / "endpoint.key"
    secrets = init_home(paths, display_name="Alice", passphrase=None, key_file=key_file, now=NOW)
    assert _mode(key_file) == 0o600
    assert len(key_file.read_bytes()) == 32
    assert json.loads(paths.secrets.read_text())["kdf"] == {"alg": "keyfile"}
    again = unlock(paths, passphrase=None, key_file=key_file)
    assert again.identity.seed == secrets.identity.seed


def test_an_existing_key_file_is_used(paths: Paths, tmp_path: Path) -> None:
    key_file = tmp_path / "endpoint.key"
    create_key_file(key_file)
    key = key_file.read_bytes()
    init_home(paths, display_name="Alice", passphrase=None, key_file=key_file, now=NOW)
    assert key_file.read_bytes() == key
    unlock(paths, passphrase=None, key_file=key_file)


def test_wrong_key_file_and_wrong_kind_of_secret(paths: Paths, tmp_path: Path) -> None:
    key_file = tmp_path / "a.key"
    init_home(paths, display_name="Alice", passphrase=None, key_file=key_file, now=NOW)
    other = tmp_path / "b.key"
    create_key_file(other)
    with pytest.raises(UnlockError, match="wrong key file"):
        unlock(paths, passphrase=None, key_file=other)
    with pytest.raises(UnlockError, match="sealed with a key file"):
        unlock(paths, passphrase="anything", key_file=None)


def test_passphrase_sealed_secrets_refuse_a_key_file(paths: Paths, tmp_path: Path) -> None:
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST)
    key_file = tmp_path / "k.key"
    create_key_file(key_file)
    with pytest.raises(UnlockError, match="sealed with a passphrase"):
        unlock(paths, passphrase=None, key_file=key_file)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = tmp_path / "k.key"
    create_key_file(key_file)
    key_file.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_key_file(key_file)


def test_key_file_of_the_wrong_length(tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    key_file.write_bytes(b"x" * 31)
    key_file.chmod(0o600)
    with pytest.raises(ConfigError, match="not 32 bytes"):
        read_key_file(key_file)
    with pytest.raises(ConfigError, match="cannot read"):
        read_key_file(tmp_path / "missing.key")


def test_create_key_file_refuses_to_overwrite(tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    create_key_file(key_file)
    with pytest.raises(ConfigError, match="already exists"):
        create_key_file(key_file)


def test_init_refuses_a_home_that_holds_an_endpoint(paths: Paths) -> None:
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST)
    before = paths.secrets.read_bytes()
    with pytest.raises(ConfigError, match="already holds an endpoint"):
        init_home(
            paths, display_name="Mallory", passphrase="pw2", key_file=None, now=NOW, kdf_cost=FAST
        )
    assert paths.secrets.read_bytes() == before


def test_init_keeps_an_existing_config(paths: Paths) -> None:
    paths.home.mkdir(parents=True)
    paths.config.write_text("onion_port = 9999\n")
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST)
    assert load_config(paths).onion_port == 9999


def test_init_tightens_an_existing_home_directory(paths: Paths) -> None:
    paths.home.mkdir(mode=0o755, parents=True)
    paths.home.chmod(0o755)
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST)
    assert _mode(paths.home) == 0o700


@pytest.mark.parametrize(
    ("passphrase", "key_file"), [(None, None), ("pw", Path("/nonexistent/k.key")), ("", None)]
)
def test_init_needs_exactly_one_usable_secret(
    paths: Paths, passphrase: str | None, key_file: Path | None
) -> None:
    with pytest.raises(ConfigError):
        init_home(
            paths,
            display_name="Alice",
            passphrase=passphrase,
            key_file=key_file,
            now=NOW,
            kdf_cost=FAST,
        )
    assert not paths.secrets.exists()


@pytest.mark.parametrize("name", ["", "   ", "a" * 65, "bell\x07", "rtl\u202eoverride"])
def test_init_refuses_a_bad_display_name(paths: Paths, name: str) -> None:
    with pytest.raises(ConfigError):
        init_home(paths, display_name=name, passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST)


def _edit(paths: Paths, change: dict[str, object]) -> None:
    document = json.loads(paths.secrets.read_text())
    for key, value in change.items():
        if key.startswith("kdf."):
            document["kdf"][key[4:]] = value
        else:
            document[key] = value
    paths.secrets.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kdf.opslimit": 3}, "wrong passphrase"),  # parameters are bound by the AD
        ({"kdf.memlimit": 2**40}, "unusable"),  # would take a TiB to try
        ({"kdf.opslimit": True}, "not an integer"),
        ({"kdf.salt": "zz"}, "not hex"),
        ({"kdf.alg": "scrypt"}, "unknown kdf"),
        ({"kdf.extra": 1}, "unexpected kdf fields"),
        ({"version": 2}, "version 1"),
        ({"nonce": "00" * 12}, "nonce"),
        ({"ciphertext": None}, "missing"),
    ],
)
def test_an_altered_secrets_file_does_not_unlock(
    paths: Paths, change: dict[str, object], message: str
) -> None:
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST)
    _edit(paths, change)
    with pytest.raises(UnlockError, match=message):
        unlock(paths, passphrase="pw", key_file=None)


def test_a_flipped_ciphertext_bit_does_not_unlock(paths: Paths) -> None:
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST)
    document = json.loads(paths.secrets.read_text())
    raw = bytearray(bytes.fromhex(document["ciphertext"]))
    raw[5] ^= 1
    _edit(paths, {"ciphertext": raw.hex()})
    with pytest.raises(UnlockError, match="altered"):
        unlock(paths, passphrase="pw", key_file=None)


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b"{}"])
def test_garbage_secrets_files(paths: Paths, content: bytes) -> None:
    paths.home.mkdir(parents=True)
    paths.secrets.write_bytes(content)
    with pytest.raises(UnlockError):
        unlock(paths, passphrase="pw", key_file=None)


def test_unlock_without_an_endpoint(paths: Paths) -> None:
    with pytest.raises(ConfigError, match="onionpost init"):
        unlock(paths, passphrase="pw", key_file=None)


def test_secrets_repr_shows_nothing_secret(paths: Paths) -> None:
    secrets = init_home(
        paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST
    )
    text = repr(secrets) + str(secrets)
    assert secrets.identity.address.service_id in text
    for secret in (
        secrets.identity.seed,
        secrets.client_auth_private,
        secrets.static.keypair.private,
        secrets.store_key,
    ):
        assert secret.hex() not in text
        assert repr(secret) not in text


def test_save_secrets_after_static_key_rotation(paths: Paths, tmp_path: Path) -> None:
    secrets = init_home(
        paths, display_name="Alice", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST
    )
    later = NOW + 80 * 24 * 3600
    assert secrets.static.certificate.needs_renewal(later)
    secrets.static = StaticKey.generate(secrets.identity, now=later)
    save_secrets(paths, secrets, passphrase="pw", key_file=None, kdf_cost=FAST)
    assert _mode(paths.secrets) == 0o600
    again = unlock(paths, passphrase="pw", key_file=None)
    assert again.static.keypair == secrets.static.keypair
    assert not again.static.certificate.needs_renewal(later)
    # ... and switching to a key file re-seals the same secrets.
    key_file = tmp_path / "k.key"
    create_key_file(key_file)
    save_secrets(paths, again, passphrase=None, key_file=key_file)
    assert unlock(paths, passphrase=None, key_file=key_file).store_key == secrets.store_key
    assert sorted(p.name for p in paths.home.iterdir() if p.name.startswith(".")) == []


def test_an_expired_certificate_still_unlocks(paths: Paths) -> None:
    """The daemon renews it; unlocking must not refuse an old one."""
    init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=1000, kdf_cost=FAST)
    secrets = unlock(paths, passphrase="pw", key_file=None)
    assert secrets.static.certificate.not_after < NOW


def test_secrets_check_their_own_consistency() -> None:
    secrets = Secrets.generate("Alice", now=NOW)
    with pytest.raises(ConfigError):
        Secrets(
            identity=secrets.identity,
            client_auth_private=secrets.client_auth_private,
            client_auth_public=bytes(32),
            static=secrets.static,
            store_key=secrets.store_key,
            display_name="Alice",
        )


def test_card_issued_from_secrets_round_trips(paths: Paths) -> None:
    secrets = init_home(
        paths, display_name="Ålice Ünicode", passphrase="pw", key_file=None, now=NOW, kdf_cost=FAST
    )
    card = ContactCard.issue(secrets)
    assert ContactCard.parse(card.to_line()) == card
    assert paths.card.read_text() == card.to_line() + "\n"


def test_secret_files_are_0600_even_under_a_loose_umask(paths: Paths, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        key_file = tmp_path / "k.key"
        init_home(paths, display_name="Alice", passphrase=None, key_file=key_file, now=NOW)
    finally:
        os.umask(old)
    assert _mode(key_file) == 0o600
    assert _mode(paths.secrets) == 0o600
    assert _mode(paths.home) == 0o700
