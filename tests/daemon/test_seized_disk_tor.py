"""What a seized disk shows: every file of two endpoints and a mailbox, scanned.

On the private Tor network: alice, bob and a mailbox both are paired with,
each a real process with its own tor. Alice sends bob a canary text and a
canary file directly; bob's daemon stops; alice sends another canary text
and file, which are deposited in bob's mailbox; bob comes back and drains
them. Then, once while every process runs and once after they all stopped,
every file under the three homes (store, its WAL and binding, ``files/``,
``tor/``, ``run/``, card, config, secrets) and under the test's own
directories (the daemons' logs, the children's ``TMPDIR``, the files sent
and exported) is searched for the canaries, their file names, the display
names and the contact names: raw, UTF-8, UTF-16 (both byte orders), JSON
escaped, hex and base64 (standard and URL alphabets, every alignment); and
for the secret keys, also in base32. Nothing may be found except what
``protocol-spec/storage.md`` says a disk holds (:func:`_expected`).

What tor keeps of the contacts (their addresses, our client-authorization
key, which this daemon gives tor for every contact and mailbox) is printed,
not asserted: storage.md "What tor keeps" is written from that report.
The daemons' logs (what the systemd journal receives, at the default
``log_level = "info"``) must hold no name, no contact's or mailbox's address,
and no canary.

The tors run with tor's default ``SafeLogging 1`` (the test network sets 0
for its own debugging), so their ``notice.log`` is what it is in production.
"""

from __future__ import annotations

import base64
import json
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from onionpost.client import open_client
from onionpost.home import Paths, unlock
from onionpost.proto.address import OnionAddress, expanded_secret_key
from onionpost.testing.endpoint import Endpoint, start_all
from onionpost.testing.mailbox import (
    Mailbox,
    contact_status,
    endpoint_config,
    incoming,
    owner_status,
    pair,
    states,
    wait_for,
)
from onionpost.testing.testnet import Testnet

pytestmark = [
    pytest.mark.tor,
    pytest.mark.timeout(900),
    # stem's controller, used here to ask a running tor what it holds.
    pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning"),
]

SETUP_SECONDS = 180.0
DELIVERY_SECONDS = 300.0
DONE = {"delivered", "read"}

# What the scan looks for. Each canary holds non-ASCII text, so its UTF-8,
# UTF-16 and JSON-escaped forms all differ.
TEXT_DIRECT = "CANARY-DIRECT-5e81 the courier crosses at Ærø before dawn"
TEXT_DEPOSITED = "CANARY-MAILBOX-a7c4 the safe house moved to Łódź, street 12"
FILE_UNIT_DIRECT = "FILE-CANARY-DIRECT-3b9d ledger ÆØÅ|"
FILE_UNIT_DEPOSITED = "FILE-CANARY-MAILBOX-c02f roster ŁŻŚ|"
FILE_NAME_DIRECT = "brief-CANARY-NAME-77e1.txt"
FILE_NAME_DEPOSITED = "memo-CANARY-NAME-19fa.txt"
ALICE_NAME = "Wren Ledger-4q7x"  # display names: on each one's card
BOB_NAME = "Osprey Väult-9k2m"
MAILBOX_NAME = "Cistern Relay-z6p0"
BOB_AT_ALICE = "Kestrel Désk-h3v8"  # contact names: what each calls the other
ALICE_AT_BOB = "Heron Nest-w5d1"


class _Named:
    """An Endpoint (or Mailbox) whose display name is not its directory's name,
    so a name found on disk is never just a path."""

    name: str
    display: str

    def cli(self, *args: str, check: bool = True) -> object:
        if args[:3] == ("init", "--name", self.name):
            args = ("init", "--name", self.display, *args[3:])
        return super().cli(*args, check=check)  # type: ignore[misc]


class NamedEndpoint(_Named, Endpoint):
    def __init__(self, root: Path, name: str, net: Testnet, display: str) -> None:
        self.display = display
        super().__init__(root, name, net, top_config=endpoint_config())
        _production_safe_logging(self.home)


class NamedMailbox(_Named, Mailbox):
    def __init__(self, root: Path, name: str, net: Testnet, display: str) -> None:
        self.display = display
        super().__init__(root, name, net)
        _production_safe_logging(self.home)


def _production_safe_logging(home: Path) -> None:
    config = home / "config.toml"
    text = config.read_text()
    assert 'SafeLogging = "0"' in text
    config.write_text(text.replace('SafeLogging = "0"', 'SafeLogging = "1"'))


# -- encodings ---------------------------------------------------------------------------


def _b64_runs(data: bytes) -> list[bytes]:
    """The base64 characters that encode ``data`` whatever its offset mod 3 in
    the encoded stream: the characters no neighbouring byte touches."""
    runs = []
    for k in range(3):
        encoded = base64.b64encode(bytes(k) + data)
        run = encoded[-(-8 * k // 6) : 8 * (k + len(data)) // 6]
        runs += [run, run.translate(bytes.maketrans(b"+/", b"-_"))]
    return runs


def _b32_runs(data: bytes) -> list[bytes]:
    runs = []
    for k in range(5):
        encoded = base64.b32encode(bytes(k) + data)
        run = encoded[-(-8 * k // 5) : 8 * (k + len(data)) // 5]
        runs += [run, run.lower()]
    return runs


def _forms(value: str | bytes, *, base32: bool = False) -> dict[str, bytes]:
    """Every form of ``value`` the scan looks for, by the name of its encoding."""
    raw = value.encode() if isinstance(value, str) else value
    forms = {"raw/utf-8": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    if isinstance(value, str):
        forms["utf-16-le"] = value.encode("utf-16-le")
        forms["utf-16-be"] = value.encode("utf-16-be")
        forms["json"] = json.dumps(value)[1:-1].encode()
    for i, run in enumerate(_b64_runs(raw)):
        forms[f"base64 {'std' if i % 2 == 0 else 'url'} @{i // 2}"] = run
    if base32:
        for i, run in enumerate(_b32_runs(raw)):
            forms[f"base32 {'upper' if i % 2 == 0 else 'lower'} @{i // 2}"] = run
    return forms


# -- the scan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    path: Path
    what: str
    form: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what} ({self.form})"


def _files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        for path in sorted(root.rglob("*")):
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                yield path


def scan(roots: Iterable[Path], needles: dict[str, dict[str, bytes]]) -> list[Hit]:
    """Every (file, needle, form) found: in a file's bytes or in its path."""
    hits = []
    for path in _files(roots):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a live process removed it meanwhile
            continue
        name = str(path).encode()
        for what, forms in needles.items():
            for form, needle in forms.items():
                if needle in data:
                    hits.append(Hit(path, what, form))
                elif needle in name:
                    hits.append(Hit(path, what, f"{form} in its path"))
    return hits


def _describe(paths: Iterable[Path], base: Path) -> str:
    lines = []
    for path in paths:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        lines.append(f"  {path.relative_to(base)} ({size} bytes)")
    return "\n".join(lines)


# -- the scenario ------------------------------------------------------------------------


@dataclass
class World:
    root: Path
    inputs: Path
    exports: Path
    tmp: Path
    alice: NamedEndpoint
    bob: NamedEndpoint
    mailbox: NamedMailbox

    @property
    def everyone(self) -> list[Endpoint]:
        return [self.alice, self.bob, self.mailbox]

    @property
    def roots(self) -> list[Path]:
        return [self.root, self.inputs, self.exports]


def _send_file(endpoint: Endpoint, contact: str, source: Path) -> str:
    async def send() -> str:
        async with open_client(endpoint.home) as client:
            return (await client.send_file(contact, source)).id

    return trio.run(send)


def _exchange(world: World) -> None:
    alice, bob, mailbox = world.alice, world.bob, world.mailbox
    start_all(world.everyone)
    alice.cli("contact", "add", "--name", BOB_AT_ALICE, bob.json("whoami")["card"])
    bob.cli("contact", "add", "--name", ALICE_AT_BOB, alice.json("whoami")["card"])
    for endpoint in (alice, bob):
        pair(endpoint, mailbox)
    for endpoint in (alice, bob):
        wait_for(
            lambda e=endpoint: bool(owner_status(e)["reachable"]),
            f"{endpoint.name}'s mailbox",
            SETUP_SECONDS,
        )

    # Directly: a text and a file.
    direct_file = world.inputs / FILE_NAME_DIRECT
    direct_file.write_text(FILE_UNIT_DIRECT * 6000)  # ~220 kB: four records
    direct = [
        alice.json("send", BOB_AT_ALICE, TEXT_DIRECT)["id"],
        _send_file(alice, BOB_AT_ALICE, direct_file),
    ]
    wait_for(lambda: set(states(alice.home, direct).values()) <= DONE, "direct", DELIVERY_SECONDS)
    wait_for(
        lambda: contact_status(alice, BOB_AT_ALICE)["mailbox"] == mailbox.address,
        "alice learning bob's mailbox",
        SETUP_SECONDS,
    )

    # Bob away: deposited in his mailbox, then drained.
    bob.terminate()
    deposited_file = world.inputs / FILE_NAME_DEPOSITED
    deposited_file.write_text(FILE_UNIT_DEPOSITED * 1000)  # ~40 kB: one envelope
    deposited = [
        alice.json("send", BOB_AT_ALICE, TEXT_DEPOSITED)["id"],
        _send_file(alice, BOB_AT_ALICE, deposited_file),
    ]
    wait_for(
        lambda: set(states(alice.home, deposited).values()) == {"deposited"},
        "the deposits",
        DELIVERY_SECONDS,
    )
    bob.start()
    wanted = {*direct, *deposited}
    wait_for(
        lambda: wanted <= {m.id for m in incoming(bob.home)},
        "bob's drain",
        DELIVERY_SECONDS,
    )
    bodies = {m.id: m.body for m in incoming(bob.home)}
    assert bodies[direct[0]] == TEXT_DIRECT
    assert bodies[deposited[0]] == TEXT_DEPOSITED
    wait_for(
        lambda: set(states(alice.home, wanted).values()) <= DONE,
        "alice seeing everything delivered",
        DELIVERY_SECONDS,
    )
    bob.cli("inbox", "--export-dir", str(world.exports))
    assert sorted(p.name for p in world.exports.iterdir()) == sorted(
        [FILE_NAME_DIRECT, FILE_NAME_DEPOSITED]
    )
    assert (world.exports / FILE_NAME_DIRECT).read_bytes() == direct_file.read_bytes()


# -- what is looked for, and what storage.md expects ---------------------------------------


def _must_not_leak() -> dict[str, dict[str, bytes]]:
    needles: dict[str, dict[str, bytes]] = {}
    for what, value in {
        "text (direct)": TEXT_DIRECT,
        "text (deposited)": TEXT_DEPOSITED,
        "text token (direct)": "CANARY-DIRECT-5e81",
        "text token (deposited)": "CANARY-MAILBOX-a7c4",
        "file content (direct)": FILE_UNIT_DIRECT,
        "file content (deposited)": FILE_UNIT_DEPOSITED,
        "file name (direct)": FILE_NAME_DIRECT,
        "file name (deposited)": FILE_NAME_DEPOSITED,
        "display name alice": ALICE_NAME,
        "display name bob": BOB_NAME,
        "display name mailbox": MAILBOX_NAME,
        "contact name bob at alice": BOB_AT_ALICE,
        "contact name alice at bob": ALICE_AT_BOB,
    }.items():
        needles[what] = _forms(value)
    return needles


@dataclass
class Keys:
    """One home's identity and keys, read with its key file."""

    name: str
    address: OnionAddress
    secret: dict[str, bytes]  # never on disk in any form
    client_auth_private: bytes
    client_auth_public: bytes


def _keys(endpoint: Endpoint) -> Keys:
    secrets = unlock(Paths.for_home(endpoint.home), passphrase=None, key_file=endpoint.key)
    return Keys(
        endpoint.name,
        secrets.identity.address,
        {
            "identity seed": secrets.identity.seed,
            "expanded identity key": expanded_secret_key(secrets.identity.seed),
            "store key": secrets.store_key,
            "static private key": secrets.static.keypair.private,
        },
        secrets.client_auth_private,
        secrets.client_auth_public,
    )


def _secret_needles(keys: list[Keys]) -> dict[str, dict[str, bytes]]:
    return {
        f"{k.name}'s {what}": _forms(value, base32=True)
        for k in keys
        for what, value in k.secret.items()
    }


def _expected(world: World, hit: Hit) -> bool:
    """What storage.md says a disk holds in these forms (§1, §3, §6.1)."""
    cards = {
        world.alice.home / "card.txt": "display name alice",
        world.bob.home / "card.txt": "display name bob",
        world.mailbox.home / "card.txt": "display name mailbox",
    }
    if cards.get(hit.path) == hit.what and hit.form.startswith("base64"):
        # The public card carries its own display name (§3), in base64url (where
        # the name's characters encode without '-' or '_', that is base64 too).
        return True
    # The operator's own files: those sent, and those exported (§6.1).
    return hit.path.is_relative_to(world.inputs) or hit.path.is_relative_to(world.exports)


def _tor_report(world: World, keys: dict[str, Keys], when: str) -> str:
    """Which addresses and client-authorization keys each tor's DataDirectory holds."""
    contacts = {
        "alice": ["bob", "mailbox"],
        "bob": ["alice", "mailbox"],
        "mailbox": ["alice", "bob"],
    }
    lines = [f"what tor keeps ({when}):"]
    for endpoint in world.everyone:
        mine = keys[endpoint.name]
        needles = {f"its own address {mine.address.service_id}": _forms(mine.address.service_id)}
        needles[f"its own client-auth private key ({endpoint.name})"] = _forms(
            mine.client_auth_private, base32=True
        )
        for other in contacts[endpoint.name]:
            theirs = keys[other]
            needles[f"{other}'s address"] = {
                **_forms(theirs.address.service_id),
                **{f"key {f}": v for f, v in _forms(theirs.address.public_key).items()},
            }
            needles[f"{other}'s client-auth public key"] = _forms(
                theirs.client_auth_public, base32=True
            )
        tor_dir = endpoint.home / "tor"
        lines.append(f" {endpoint.name} ({endpoint.display}): {tor_dir}")
        lines.append(_describe(_files([tor_dir]), tor_dir))
        found = scan([tor_dir], needles)
        for hit in found:
            lines.append(f"    FOUND {hit.path.relative_to(tor_dir)}: {hit.what} ({hit.form})")
        if not found:
            lines.append("    no address of its own or of another, no client-auth key")
    return "\n".join(lines)


def _log_report(world: World, keys: dict[str, Keys]) -> list[str]:
    """Names, addresses and canaries in the daemons' INFO logs (the journal)."""
    problems = []
    needles = _must_not_leak()
    for endpoint in (world.alice, world.bob):
        others = [k for name, k in keys.items() if name != endpoint.name]
        log_needles = dict(needles)
        for other in others:
            log_needles[f"{other.name}'s address"] = _forms(other.address.service_id)
        for hit in scan([endpoint.log], log_needles):
            problems.append(f"{hit}")
    box_log = world.mailbox.log.read_bytes()
    owners = [k for name, k in keys.items() if name != "mailbox"]
    print(
        "mailbox log: owners' addresses "
        + ", ".join(f"{k.name}: {k.address.service_id.encode() in box_log}" for k in owners)
    )
    return problems


def _tor_memory(world: World) -> str:
    """What each running tor holds in memory and would write: its client-auth keys
    (ONION_CLIENT_AUTH_VIEW: addresses and flags; a key without ``Permanent`` is
    never written) and ClientOnionAuthDir."""
    from stem.control import Controller

    lines = ["tor's client authorization, live:"]
    for endpoint in world.everyone:
        with Controller.from_socket_file(str(endpoint.home / "tor" / "control.sock")) as tor:
            tor.authenticate()
            auth_dir = tor.get_conf("ClientOnionAuthDir", "") or "(unset)"
            reply = str(tor.msg("ONION_CLIENT_AUTH_VIEW"))
        held = []
        for line in reply.splitlines():
            if line.startswith("CLIENT "):
                fields = line.split()
                flags = [f for f in fields[3:] if f.startswith("Flags=")]
                held.append(f"{fields[1][:8]}... {' '.join(flags) or '(no flags)'}")
        lines.append(
            f"  {endpoint.name}: ClientOnionAuthDir {auth_dir}; keys for "
            + (", ".join(held) or "nothing")
        )
    return "\n".join(lines)


def _scan_and_report(world: World, keys: dict[str, Keys], when: str) -> list[str]:
    needles = {**_must_not_leak(), **_secret_needles(list(keys.values()))}
    hits = scan(world.roots, needles)
    expected = [h for h in hits if _expected(world, h)]
    unexpected = [h for h in hits if not _expected(world, h)]
    print(f"\n== {when}: files under {world.root}")
    print(_describe(_files([world.root]), world.root))
    print(f"expected ({when}):")
    for hit in expected:
        print(f"  {hit}")
    print(_tor_report(world, keys, when))
    # The scan is not blind: it finds each card's name and each file sent and exported.
    seen = {(h.path.name, h.what) for h in expected}
    must_see = {("card.txt", f"display name {e.name}") for e in world.everyone} | {
        (name, f"file content ({how})")
        for name, how in ((FILE_NAME_DIRECT, "direct"), (FILE_NAME_DEPOSITED, "deposited"))
    }
    blind = [f"{when}: the scan did not find {pair} where it is" for pair in must_see - seen]
    return blind + [f"{when}: {hit}" for hit in unexpected]


def test_a_seized_disk_shows_no_content_and_no_name(
    testnet: Testnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Homes under a short root: tor's control socket path must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="op-seized-", dir="/tmp"))
    tmp = root / "tmp"
    tmp.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(tmp))  # every child's temporary files land here
    inputs, exports = tmp_path / "inputs", tmp_path / "exports"
    inputs.mkdir()
    exports.mkdir()
    world = World(
        root,
        inputs,
        exports,
        tmp,
        NamedEndpoint(root, "alice", testnet, ALICE_NAME),
        NamedEndpoint(root, "bob", testnet, BOB_NAME),
        NamedMailbox(root, "mailbox", testnet, MAILBOX_NAME),
    )
    try:
        keys = {e.name: _keys(e) for e in world.everyone}
        _exchange(world)
        problems = _scan_and_report(world, keys, "live")
        print(_tor_memory(world))
        print("addresses: " + ", ".join(f"{n} {k.address.service_id}" for n, k in keys.items()))
        for endpoint in (world.alice, world.bob):
            endpoint.terminate()
        world.mailbox.stop()
        problems += _scan_and_report(world, keys, "stopped")
        problems += _log_report(world, keys)
    finally:
        for endpoint in world.everyone:
            endpoint.stop()
    assert not problems, "\n".join(problems)
    shutil.rmtree(root)
