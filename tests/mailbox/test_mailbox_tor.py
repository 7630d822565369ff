"""A mailbox process on the private Tor network, reached through tor as owners reach it.

``onionpost mailbox serve`` runs as a child process with its own tor, in a
session of its own (so kill -9 takes it and its tor). The test's side is an
in-process tor joined to the same network: holding the key of a setup code
made with ``onionpost mailbox code --json``, it reaches the client-authorized
onion service, runs the handshake (``transport.connect`` over ``tor.dial``)
and pairs; a second tor, holding no key or a wrong one, cannot even fetch
the descriptor. After kill -9 and a restart, what was deposited is there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from onionpost.errors import DialError, OnionpostError
from onionpost.home import Secrets
from onionpost.proto import envelope as env
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.pairing import SetupCode
from onionpost.testing.testnet import Testnet
from onionpost.tor import Tor, TorConfig, open_tor
from onionpost.transport import SecureChannel, connect

pytestmark = [pytest.mark.tor, pytest.mark.timeout(900)]

READY_SECONDS = 120.0
DIAL_SECONDS = 180.0
ONION_PORT = 7733
READY_LINE = b"onionpost mailbox ready: "
CLIENT_AUTH_REFUSED = frozenset({"client-auth-missing", "client-auth-wrong"})


@dataclass
class MailboxProcess:
    """A home run by ``onionpost mailbox serve`` in a child process."""

    root: Path
    testnet: Testnet
    process: subprocess.Popen[bytes] | None = None
    address: OnionAddress | None = None

    @property
    def home(self) -> Path:
        return self.root / "box"

    @property
    def key(self) -> Path:
        return self.root / "box.key"

    @property
    def log(self) -> Path:
        return self.root / "box.log"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "onionpost", "--home", str(self.home)]

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [*self.argv(), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def init(self) -> None:
        self.cli("init", "--name", "box", "--key-file", str(self.key))
        config = self.home / "config.toml"
        config.write_text(config.read_text() + self.testnet.config_toml())

    def start(self) -> None:
        start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.argv(), "mailbox", "serve", "--key-file", str(self.key)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            written = self.log.read_bytes()[start:]
            if READY_LINE in written:
                line = written.split(READY_LINE, 1)[1].split(b"\n", 1)[0]
                self.address = OnionAddress.parse(line.decode().strip())
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"the mailbox did not start:\n{self.log.read_text()[-4000:]}")

    def wait_for_log(self, line: bytes) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if line in self.log.read_bytes():
                return
            time.sleep(0.2)
        pytest.fail(f"the mailbox did not log {line!r}:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """kill -9 of the mailbox and its tor: a crash."""
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None


@pytest.fixture(scope="module")
def mailbox(testnet: Testnet) -> Iterator[MailboxProcess]:
    root = Path(tempfile.mkdtemp(prefix="op-mbox-", dir="/tmp"))
    box = MailboxProcess(root, testnet)
    box.init()
    box.start()
    try:
        yield box
    finally:
        box.stop()


@asynccontextmanager
async def client_tor(directory: Path, testnet: Testnet) -> AsyncIterator[Tor]:
    async with open_tor(TorConfig(data_dir=directory, extra_options=testnet.tor_options())) as tor:
        yield tor


async def dial(
    tor: Tor, address: OnionAddress, *, give_up_on: frozenset[str] = frozenset()
) -> trio.SocketStream:
    """A stream to the mailbox, retrying what a fresh publication looks like (0xF0,
    a stale descriptor) until DIAL_SECONDS; a reason in ``give_up_on`` is raised."""
    with trio.fail_after(DIAL_SECONDS):
        while True:
            try:
                with trio.move_on_after(30):
                    return await tor.dial(address, ONION_PORT)
            except DialError as exc:
                if exc.reason in give_up_on:
                    raise
            with suppress(OnionpostError):
                await tor.refetch_descriptor(address)
            await trio.sleep(2)


async def session(tor: Tor, address: OnionAddress, peer: Secrets) -> SecureChannel:
    stream = await dial(tor, address)
    return await connect(stream, identity=peer.identity, static=peer.static, peer=address)


async def ask(channel: SecureChannel, record: m.Message) -> m.Message:
    await channel.send(record)
    with trio.fail_after(60):
        while True:
            answer = await channel.receive()
            if getattr(answer, "req", None) == getattr(record, "req", None):
                return answer


def envelope_bytes() -> bytes:
    header = bytes([env.ENVELOPE_VERSION]) + os.urandom(16) + os.urandom(16)
    return header + os.urandom(env.MIN_ENVELOPE + 500 - len(header))


def test_a_code_holder_pairs_a_stranger_is_kept_out_and_deposits_survive_kill_9(
    mailbox: MailboxProcess, testnet: Testnet, tmp_path: Path
) -> None:
    assert mailbox.address is not None
    address = mailbox.address
    issued = json.loads(mailbox.cli("mailbox", "code", "--json", "--expires", "1h"))
    code = SetupCode.parse(issued["code"])
    assert code.mailbox == address
    owner = Secrets.generate("owner", now=int(time.time()))
    envelope = envelope_bytes()

    async def pair_and_deposit() -> None:
        async with client_tor(tmp_path / "owner-tor", testnet) as tor:
            # The code's key opens the door for pairing.
            await tor.add_client_auth(address, code.client_auth_private())
            channel = await session(tor, address, owner)
            paired = await ask(channel, m.MbPair(1, code.token(), owner.client_auth_public))
            assert isinstance(paired, m.MbResult)
            assert (paired.code, paired.detail) == (m.MbCode.OK, "")
            # The owner registers itself as a contact, so that it can deposit here too.
            registered = await ask(
                channel,
                m.MbRegister(2, owner.identity.public_key, owner.client_auth_public),
            )
            assert registered.code == m.MbCode.OK  # type: ignore[union-attr]
            deposited = await ask(channel, m.MbDeposit(3, owner.identity.public_key, envelope))
            assert isinstance(deposited, m.MbResult)
            assert deposited.code == m.MbCode.OK
            assert deposited.value == 0  # a depositor is told no seq
            await channel.aclose()

    trio.run(pair_and_deposit)
    # The mailbox tells its tor about the owner's key (the code's stays until it expires).
    mailbox.wait_for_log(b"event=clients_authorized count=2")

    async def owner_key_opens_the_door() -> None:
        async with client_tor(tmp_path / "owner-tor-2", testnet) as tor:
            await tor.add_client_auth(address, owner.client_auth_private)
            channel = await session(tor, address, owner)
            usage = await ask(channel, m.MbStatus(1))
            assert isinstance(usage, m.MbUsage)
            assert (usage.envelopes, usage.contacts) == (1, 1)
            await channel.aclose()

    trio.run(owner_key_opens_the_door)

    async def stranger() -> list[str]:
        reasons = []
        async with client_tor(tmp_path / "stranger-tor", testnet) as tor:
            for key in (None, os.urandom(32)):
                if key is not None:
                    await tor.add_client_auth(address, key)
                with pytest.raises(DialError) as refused:
                    await dial(tor, address, give_up_on=CLIENT_AUTH_REFUSED)
                reasons.append(refused.value.reason)
        return reasons

    assert trio.run(stranger) == ["client-auth-missing", "client-auth-wrong"]

    mailbox.kill()
    mailbox.start()
    status = json.loads(mailbox.cli("mailbox", "status", "--json"))
    (held,) = status["owners"]
    assert (held["owner"], held["envelopes"], held["contacts"]) == (
        str(owner.identity.address),
        1,
        1,
    )

    async def drain() -> m.MbEnvelope:
        async with client_tor(tmp_path / "owner-tor-3", testnet) as tor:
            # Paired: from now on the owner's own key is the one tor knows.
            await tor.add_client_auth(address, owner.client_auth_private)
            channel = await session(tor, address, owner)
            await channel.send(m.MbFetch(1, 0))
            with trio.fail_after(60):
                pushed = await channel.receive()
                done = await channel.receive()
            assert isinstance(done, m.MbResult)
            assert (done.code, done.value) == (m.MbCode.OK, 1)  # the owner's first
            await channel.aclose()
            assert isinstance(pushed, m.MbEnvelope)
            return pushed

    pushed = trio.run(drain)
    assert (pushed.seq, pushed.envelope) == (1, envelope)
    log = mailbox.log.read_bytes()
    assert b"event=clients_authorized" in log
    assert owner.identity.address.service_id.encode() not in log  # INFO: handles only
    assert code.token().hex().encode() not in log
    assert envelope[40:80].hex().encode() not in log
