"""The tor adapter against real tor on the private network (``@pytest.mark.tor``).

No mocks: every ``tor`` test runs tor processes on 127.0.0.1 that join the
session's private network (the ``testnet`` fixture). The unmarked tests at
the top need no tor: configuration checks, launch failures that happen before
tor runs, and the dial scheduler.
"""

from __future__ import annotations

import base64
import functools
import os
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from nacl.bindings import crypto_scalarmult_base, crypto_sign_seed_keypair

from onionpost.errors import ConfigError, DialError, TorControlError, TorError, TorLaunchError
from onionpost.proto.address import OnionAddress, expanded_secret_key
from onionpost.testing.testnet import Testnet as Network
from onionpost.tor import (
    DescriptorState,
    DialScheduler,
    Tor,
    TorConfig,
    TorState,
    open_tor,
)
from onionpost.tor._controller import (
    HsDescEvent,
    client_circuit_ids,
    parse_socks_listener,
    service_circuit_ids,
    service_intro_count,
)
from onionpost.tor._publish import (
    INTRO_LOST_SECONDS,
    UPLOAD_QUIET_SECONDS,
    UPLOAD_STRAGGLER_SECONDS,
    ServiceRecord,
    UploadRound,
)

# Every tor test runs under a deadline; none may hang.
START_DEADLINE = 60
PUBLISH_DEADLINE = 30
QUICK_FAILURE_DEADLINE = 10  # client-auth refusals and unknown addresses (TOR-TESTNET.md)
DIAL_DEADLINE = 30
REVOKED_DEADLINE = 60
RESTORE_DEADLINE = 90
# A dial that hangs this long is on a rendezvous circuit whose far side is gone
# (a cold dial takes 0.1-3 s here, ~5 s when the old introduction points refuse).
DIAL_ATTEMPT_SECONDS = 15


def x25519_keypair() -> tuple[bytes, bytes]:
    private = os.urandom(32)
    return private, crypto_scalarmult_base(private)


def identity() -> tuple[bytes, bytes]:
    seed = os.urandom(32)
    public, _ = crypto_sign_seed_keypair(seed)
    return seed, public


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


@asynccontextmanager
async def echo_server() -> AsyncIterator[tuple[str, int]]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, _echo, 0, host="127.0.0.1")
        )
        yield listeners[0].socket.getsockname()[:2]
        nursery.cancel_scope.cancel()


async def round_trip(stream: trio.abc.Stream, payload: bytes) -> None:
    await stream.send_all(payload)
    received = bytearray()
    for _ in range(10_000):
        if len(received) >= len(payload):
            break
        chunk = await stream.receive_some(65536)
        assert chunk, "stream closed early"
        received += chunk
    assert bytes(received) == payload


async def dial_error(tor: Tor, address: OnionAddress, deadline: float) -> DialError:
    stream: trio.SocketStream | None = None
    with trio.fail_after(deadline), pytest.raises(DialError) as info:
        stream = await tor.dial(address, 443)
    assert stream is None
    return info.value


def launch_config(directory: Path, testnet: Network) -> TorConfig:
    return TorConfig(data_dir=directory, extra_options=testnet.tor_options())


# -- no tor needed ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"data_dir": Path("/tmp/x"), "control_port": 9051},
        {"control_port": 9051, "control_socket": Path("/tmp/s")},
        {"control_port": 0},
        {"data_dir": Path("/tmp/x"), "tor_binary": Path("tor")},
        {"data_dir": Path("/tmp/x"), "password": "p"},
        {"control_port": 9051, "extra_options": {"SocksPolicy": "accept *"}},
        {"data_dir": Path("/tmp/x"), "extra_options": {"SocksPort": "9050"}},
        {"data_dir": Path("/tmp/x"), "extra_options": {"controlport": "9051"}},
        {"data_dir": Path("/tmp/x"), "extra_options": {"RunAsDaemon": "1"}},
        {"data_dir": Path("/tmp/x"), "extra_options": {"Nickname": "a\nSocksPort 9050"}},
    ],
)
def test_config_rejects(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TorConfig(**kwargs)  # type: ignore[arg-type]


def test_config_password_not_in_repr() -> None:
    assert "hunter2" not in repr(TorConfig(control_port=9051, password="hunter2"))


async def test_missing_binary(tmp_path: Path) -> None:
    config = TorConfig(tor_binary=tmp_path / "no-tor", data_dir=tmp_path / "data")
    with trio.fail_after(START_DEADLINE), pytest.raises(TorLaunchError, match="does not exist"):
        async with open_tor(config):
            pass


async def test_binary_not_executable(tmp_path: Path) -> None:
    binary = tmp_path / "tor"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(stat.S_IRUSR | stat.S_IWUSR)
    config = TorConfig(tor_binary=binary, data_dir=tmp_path / "data")
    with trio.fail_after(START_DEADLINE), pytest.raises(TorLaunchError, match="not an executable"):
        async with open_tor(config):
            pass


async def test_scheduler_bounds_concurrency() -> None:
    scheduler = DialScheduler(max_concurrent=2)
    release = trio.Event()
    peak = 0

    async def dial(key: str) -> None:
        nonlocal peak
        async with scheduler.slot(key):
            peak = max(peak, scheduler.active)
            await release.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(dial, f"peer{i}")
            await trio.testing.wait_all_tasks_blocked()
            assert (scheduler.active, scheduler.waiting) == (2, 3)
            release.set()
    assert peak == 2
    assert (scheduler.active, scheduler.waiting) == (0, 0)


async def test_scheduler_serves_recent_successes_first() -> None:
    scheduler = DialScheduler(max_concurrent=1)
    scheduler.record_success("older")
    await trio.sleep(0.01)
    scheduler.record_success("newer")
    order: list[str] = []
    hold = trio.Event()

    async def dial(key: str) -> None:
        async with scheduler.slot(key):
            order.append(key)
            if key == "first":
                await hold.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dial, "first")
            await trio.testing.wait_all_tasks_blocked()
            for key in ("never", "older", "newer", "never-2"):
                nursery.start_soon(dial, key)
                await trio.testing.wait_all_tasks_blocked()
            hold.set()
    assert order == ["first", "newer", "older", "never", "never-2"]


async def test_scheduler_cancelled_waiter_leaks_no_slot() -> None:
    scheduler = DialScheduler(max_concurrent=1)
    hold = trio.Event()
    served: list[str] = []

    async def dial(key: str) -> None:
        async with scheduler.slot(key):
            served.append(key)
            if key == "holder":
                await hold.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dial, "holder")
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as doomed:
                doomed.start_soon(dial, "cancelled")
                await trio.testing.wait_all_tasks_blocked()
                doomed.cancel_scope.cancel()
            nursery.start_soon(dial, "after")
            await trio.testing.wait_all_tasks_blocked()
            assert scheduler.waiting == 1
            hold.set()
    assert served == ["holder", "after"]
    assert scheduler.active == 0


async def test_scheduler_slot_granted_then_cancelled_is_passed_on() -> None:
    scheduler = DialScheduler(max_concurrent=1)
    served: list[str] = []
    waiter_scope = trio.CancelScope()
    hold = trio.Event()

    async def holder() -> None:
        async with scheduler.slot("holder"):
            await hold.wait()
        # The slot was just handed to the waiter; cancel it before it runs.
        waiter_scope.cancel()

    async def waiter() -> None:
        with waiter_scope:
            async with scheduler.slot("waiter"):
                await trio.sleep(1)  # cancelled here at the latest
                served.append("waiter")

    async def last() -> None:
        async with scheduler.slot("last"):
            served.append("last")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(last)
            await trio.testing.wait_all_tasks_blocked()
            hold.set()
    assert served == ["last"]
    assert (scheduler.active, scheduler.waiting) == (0, 0)


def _hs_desc(action: str, directory: str) -> HsDescEvent:
    return HsDescEvent(1, action, "x" * 56, directory, None)


def test_uploads_settle_after_all_outcomes_and_quiet() -> None:
    uploads = UploadRound()
    uploads.reset(0.0)
    for d in ("$A", "$B", "$A"):  # two descriptors go to $A
        uploads.update(_hs_desc("UPLOAD", d), 0.0)
    uploads.update(_hs_desc("UPLOADED", "$A"), 0.1)
    assert uploads.state() is DescriptorState.PUBLISHED
    assert not uploads.settled(5.0)  # $A and $B still pending
    uploads.update(_hs_desc("FAILED", "$B"), 0.2)
    uploads.update(_hs_desc("UPLOADED", "$A"), 0.3)
    assert not uploads.settled(0.3 + UPLOAD_QUIET_SECONDS / 2)
    assert uploads.settled(0.3 + UPLOAD_QUIET_SECONDS)
    assert (uploads.uploaded, uploads.failed) == (2, 1)


def test_uploads_count_refusals_by_a_directory_holding_a_newer_descriptor() -> None:
    uploads = UploadRound()
    uploads.reset(0.0)
    for d in ("$A", "$B"):
        uploads.update(_hs_desc("UPLOAD", d), 0.0)
    uploads.update(HsDescEvent(1, "FAILED", "x" * 56, "$A", "UPLOAD_REJECTED"), 0.1)
    uploads.update(HsDescEvent(1, "FAILED", "x" * 56, "$B", "NOT_FOUND"), 0.1)
    assert (uploads.failed, uploads.rejected) == (2, 1)
    uploads.reset(1.0)
    assert uploads.rejected == 0


def test_uploads_ignore_outcomes_they_did_not_start() -> None:
    uploads = UploadRound()
    uploads.reset(0.0)
    uploads.update(_hs_desc("UPLOADED", "$OLD"), 0.0)  # late news from before DEL_ONION
    assert uploads.state() is DescriptorState.PUBLISHING
    assert not uploads.settled(100.0)


def test_uploads_all_failed_and_stragglers() -> None:
    uploads = UploadRound()
    uploads.reset(0.0)
    uploads.update(_hs_desc("UPLOAD", "$A"), 0.0)
    uploads.update(_hs_desc("FAILED", "$A"), 0.1)
    assert uploads.state() is DescriptorState.FAILED
    assert uploads.all_failed(0.1 + UPLOAD_QUIET_SECONDS)
    uploads.reset(1.0)
    uploads.update(_hs_desc("UPLOAD", "$A"), 1.0)
    uploads.update(_hs_desc("UPLOAD", "$B"), 1.0)
    uploads.update(_hs_desc("UPLOADED", "$A"), 1.1)
    # $B never answers: one success is enough after the straggler time.
    assert not uploads.settled(1.1 + UPLOAD_QUIET_SECONDS)
    assert uploads.settled(1.1 + UPLOAD_STRAGGLER_SECONDS)


def test_add_onion_command_wire_form() -> None:
    seed = bytes(range(32))
    client = bytes(32)
    service = ServiceRecord(
        seed, OnionAddress.from_public_key(bytes(32)), 443, ("127.0.0.1", 8080), (client,)
    )
    command = service.add_onion_command()
    key = base64.b64encode(expanded_secret_key(seed)).decode()
    assert command == (
        f"ADD_ONION ED25519-V3:{key} Flags=V3Auth,MaxStreamsCloseCircuit MaxStreams=8"
        f" Port=443,127.0.0.1:8080 ClientAuthV3={'a' * 52}"
    )
    # A Unix socket target, unquoted (ADD_ONION refuses quotes); PoW where tor has it.
    service.target = Path("/home/u/run/onion.sock")
    service.pow = True
    assert " PoWDefensesEnabled=1 Port=443,unix:/home/u/run/onion.sock " in (
        service.add_onion_command()
    )
    # No client: still V3Auth, to a throwaway key (nobody may connect, never anyone).
    service.clients = ()
    words = service.add_onion_command().split()
    assert "Flags=V3Auth,MaxStreamsCloseCircuit" in words
    assert len([w for w in words if w.startswith("ClientAuthV3=")]) == 1
    assert seed.hex() not in repr(service)


def test_service_wants_republish_until_an_add_settles() -> None:
    record = ServiceRecord(
        bytes(32), OnionAddress.from_public_key(bytes(32)), 1, ("127.0.0.1", 1), ()
    )
    assert record.wants_republish(0.0)  # not yet added
    record.needs_publish = False
    assert not record.wants_republish(0.0)
    record.uploads.reset(0.0)
    record.uploads.update(_hs_desc("UPLOAD", "$A"), 0.0)
    record.uploads.update(_hs_desc("FAILED", "$A"), 0.0)
    assert record.wants_republish(UPLOAD_QUIET_SECONDS)  # every upload failed


def test_a_service_with_no_introduction_point_for_a_while_is_republished() -> None:
    record = ServiceRecord(
        bytes(32), OnionAddress.from_public_key(bytes(32)), 1, ("127.0.0.1", 1), ()
    )
    record.intro_circuits(0.0, 0)
    assert not record.intro_lost(INTRO_LOST_SECONDS)  # not published yet: nothing to lose
    record.needs_publish = False
    record.intro_circuits(10.0, 3)
    record.intro_circuits(20.0, 0)  # from here
    record.intro_circuits(40.0, 0)
    assert not record.wants_republish(20.0 + INTRO_LOST_SECONDS - 1)
    assert record.wants_republish(20.0 + INTRO_LOST_SECONDS)
    # Republished (its ADD_ONION settles); still none: the wait doubles.
    record.republished_for_lost_intro()
    assert not record.wants_republish(1000.0)
    record.intro_circuits(100.0, 0)
    assert not record.intro_lost(100.0 + 2 * INTRO_LOST_SECONDS - 1)
    assert record.intro_lost(100.0 + 2 * INTRO_LOST_SECONDS)
    record.republished_for_lost_intro()
    for _ in range(10):  # bounded: at most 2**4 times the first wait
        record.republished_for_lost_intro()
    record.intro_circuits(200.0, 0)
    assert not record.intro_lost(200.0 + 16 * INTRO_LOST_SECONDS - 1)
    assert record.intro_lost(200.0 + 16 * INTRO_LOST_SECONDS)
    # Introduction points again: the clock and the doubling start over.
    record.intro_circuits(300.0, 2)
    assert not record.intro_lost(10_000.0)
    record.intro_circuits(400.0, 0)
    assert record.intro_lost(400.0 + INTRO_LOST_SECONDS)
    # While tor's network is down, the count says nothing: the clock stops.
    record.intro_circuits(401.0, None)
    assert not record.intro_lost(10_000.0)
    record.intro_circuits(500.0, 0)
    assert not record.intro_lost(500.0 + INTRO_LOST_SECONDS - 1)


def test_service_intro_count_counts_established_introduction_circuits() -> None:
    sid, other = "x" * 56, "y" * 56
    status = "\n".join(
        [
            f"12 BUILT $A~a PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={sid}",
            f"13 BUILT $B~b PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={sid}",
            f"14 BUILT $C~c PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_CONNECTING REND_QUERY={sid}",
            f"15 EXTENDED $D~d PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_CONNECTING REND_QUERY={sid}",
            f"16 BUILT $E~e PURPOSE=HS_SERVICE_REND HS_STATE=HSSR_JOINED REND_QUERY={sid}",
            f"17 BUILT $F~f PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={other}",
            f"18 BUILT $G~g PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_DONE REND_QUERY={sid}",
            "",
        ]
    )
    assert service_intro_count(status, sid) == 2
    assert service_intro_count(status, other) == 1
    assert service_intro_count("", sid) == 0


def test_control_reply_parsers() -> None:
    assert parse_socks_listener('"127.0.0.1:9050" "[::1]:9050"') == ("127.0.0.1", 9050)
    # A Unix socket is preferred: no other local account can use it (spec §1.2).
    assert parse_socks_listener('"127.0.0.1:9050" "unix:/run/tor/socks"') == Path("/run/tor/socks")
    with pytest.raises(TorError, match="no SOCKS listener"):
        parse_socks_listener('"0.0.0.0:9050" "[::1]:9050"')
    sid = "x" * 56
    status = "\n".join(
        [
            f"12 BUILT $A~a,$B~b PURPOSE=HS_SERVICE_REND HS_STATE=HSSR_JOINED REND_QUERY={sid}",
            f"13 BUILT $A~a PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={sid}",
            f"14 BUILT $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY={sid}",
            f"15 BUILT $A~a PURPOSE=HS_SERVICE_REND REND_QUERY={'y' * 56}",
            "16 BUILT $A~a PURPOSE=GENERAL",
            "",
        ]
    )
    assert service_circuit_ids(status, sid) == ["12", "13"]
    assert client_circuit_ids(status, sid) == ["14"]
    assert client_circuit_ids(status, "y" * 56) == []


def test_scheduler_rejects_zero() -> None:
    with pytest.raises(ConfigError):
        DialScheduler(max_concurrent=0)


# -- real tor ----------------------------------------------------------------------


@pytest.mark.tor
async def test_publish_dial_and_client_auth(testnet: Network, tmp_path: Path) -> None:
    seed, public = identity()
    b_private, b_public = x25519_keypair()
    with trio.fail_after(START_DEADLINE):
        async with (
            echo_server() as target,
            open_tor(launch_config(tmp_path / "a", testnet)) as a,
            open_tor(launch_config(tmp_path / "b", testnet)) as b,
        ):
            assert a.socks_address == (tmp_path / "a" / "socks.sock").absolute()
            assert a.pid is not None

            started = time.monotonic()
            with trio.fail_after(PUBLISH_DEADLINE):
                service = await a.publish(
                    seed, virtual_port=443, target=target, authorized_clients=[b_public]
                )
            publish_seconds = time.monotonic() - started
            assert service.address == OnionAddress.from_public_key(public)
            health = await a.health()
            assert health.state is TorState.OK
            assert health.bootstrap_progress == 100
            assert [s.descriptor for s in health.services] == [DescriptorState.PUBLISHED]
            # tor's own circuit-status shows the service's introduction
            # points the way the supervisor counts them (INTRO_LOST_SECONDS).
            with trio.fail_after(PUBLISH_DEADLINE):
                while not service_intro_count(
                    await a._connection().get_info("circuit-status"), service.address.service_id
                ):
                    await trio.sleep(0.2)

            # Without B's key tor cannot even decrypt the descriptor (prop 304 X'F4').
            error = await dial_error(b, service.address, QUICK_FAILURE_DEADLINE)
            assert error.reason == "client-auth-missing"

            # A key that is not in A's set (X'F5').
            await b.add_client_auth(service.address, os.urandom(32))
            error = await dial_error(b, service.address, QUICK_FAILURE_DEADLINE)
            assert error.reason == "client-auth-wrong"

            # The right key replaces it; no restart needed.
            await b.add_client_auth(service.address, b_private)
            started = time.monotonic()
            with trio.fail_after(DIAL_DEADLINE):
                stream = await b.dial(service.address, 443)
                first_dial_seconds = time.monotonic() - started
                async with stream:
                    await round_trip(stream, b"ping")
                    await round_trip(stream, os.urandom(64 * 1024))
            print(f"publish {publish_seconds:.2f} s, first dial {first_dial_seconds:.2f} s")

            # Forgetting our key purges tor's client state for that service.
            await b.remove_client_auth(service.address)
            error = await dial_error(b, service.address, QUICK_FAILURE_DEADLINE)
            assert error.reason == "client-auth-missing"
            await b.add_client_auth(service.address, b_private)
            with trio.fail_after(DIAL_DEADLINE):
                # An isolation token (SOCKS username) gets its own circuits.
                async with await b.dial(service.address, 443, isolation="peer-1") as stream:
                    await round_trip(stream, b"isolated")

            # Forgetting tor's onion client state (SIGNAL NEWNYM, which also
            # drops client keys not marked permanent) keeps ours: the next
            # dial fetches the descriptor afresh and is let in.
            await b.forget_client_state()
            with trio.fail_after(DIAL_DEADLINE):
                async with await b.dial(service.address, 443) as stream:
                    await round_trip(stream, b"after forgetting")

            # Revocation: a new authorized set without B.
            _, someone_else = x25519_keypair()
            with trio.fail_after(PUBLISH_DEADLINE):
                await a.set_authorized_clients(service, [someone_else])
            started = time.monotonic()
            error = await dial_error(b, service.address, REVOKED_DEADLINE)
            print(
                f"revoked client refused after {time.monotonic() - started:.2f} s: {error.reason}"
            )
            assert error.reason in {"client-auth-wrong", "introduction-failed"}

            # A well-formed address that nobody published (X'F0').
            _, unknown = identity()
            error = await dial_error(
                b, OnionAddress.from_public_key(unknown), QUICK_FAILURE_DEADLINE
            )
            assert error.reason == "descriptor-not-found"

            with pytest.raises(ConfigError):
                await b.dial(OnionAddress.parse("not-an-onion-address.onion"), 443)
            with pytest.raises(ConfigError):
                await b.dial("x" * 56 + ".onion", 443)  # type: ignore[arg-type]
            with pytest.raises(ConfigError):
                await a.publish(seed, virtual_port=443, target=target, authorized_clients=[])
            with pytest.raises(ConfigError, match="loopback"):
                await a.publish(
                    os.urandom(32), virtual_port=443, target=("10.0.0.1", 80), authorized_clients=[]
                )


@pytest.mark.tor
async def test_empty_authorized_set_admits_nobody(testnet: Network, tmp_path: Path) -> None:
    seed, _ = identity()
    with trio.fail_after(START_DEADLINE):
        async with (
            echo_server() as target,
            open_tor(launch_config(tmp_path / "a", testnet)) as a,
            open_tor(launch_config(tmp_path / "b", testnet)) as b,
        ):
            with trio.fail_after(PUBLISH_DEADLINE):
                service = await a.publish(
                    seed, virtual_port=443, target=target, authorized_clients=[]
                )
            error = await dial_error(b, service.address, QUICK_FAILURE_DEADLINE)
            assert error.reason == "client-auth-missing"


@pytest.mark.tor
async def test_attach_by_control_port(testnet: Network) -> None:
    publisher, dialer = testnet.clients()[:2]
    assert publisher.control_port is not None
    assert dialer.control_port is not None
    seed, _ = identity()
    b_private, b_public = x25519_keypair()
    with trio.fail_after(START_DEADLINE):
        async with (
            echo_server() as target,
            open_tor(TorConfig(control_port=publisher.control_port)) as a,
            open_tor(TorConfig(control_port=dialer.control_port)) as b,
        ):
            assert a.pid is None
            assert b.socks_address == ("127.0.0.1", dialer.socks_port)
            with trio.fail_after(PUBLISH_DEADLINE):
                service = await a.publish(
                    seed, virtual_port=443, target=target, authorized_clients=[b_public]
                )
            await b.add_client_auth(service.address, b_private)
            with trio.fail_after(DIAL_DEADLINE):
                stream = await b.dial(service.address, 443)
                async with stream:
                    await round_trip(stream, b"attached")
            # The same service from a second controller: tor refuses, and the
            # error names the command, never the key it carried.
            async with open_tor(TorConfig(control_port=publisher.control_port)) as a2:
                with pytest.raises(TorControlError, match="ADD_ONION refused") as info:
                    await a2.publish(
                        seed, virtual_port=443, target=target, authorized_clients=[b_public]
                    )
            key_blob = base64.b64encode(expanded_secret_key(seed)).decode()
            assert key_blob not in str(info.value)
            assert key_blob[:16] not in repr(info.value)


@pytest.mark.tor
async def test_attach_never_takes_ownership(testnet: Network, tmp_path: Path) -> None:
    # A tor that names this very process as its owning controller: stem's
    # authenticate() would send TAKEOWNERSHIP to it, and it would exit as soon
    # as we disconnect. Attaching must leave it running.
    data = tmp_path / "tor"
    data.mkdir(mode=0o700)
    port_file = data / "control-port"
    options = testnet.tor_options() | {
        "DataDirectory": str(data),
        "ControlPort": "127.0.0.1:auto",
        "ControlPortWriteToFile": str(port_file),
        "CookieAuthentication": "1",
        "SocksPort": "127.0.0.1:auto",
        "Log": f"notice file {data / 'notice.log'}",
        "__OwningControllerProcess": str(os.getpid()),
    }
    torrc = data / "torrc"
    torrc.write_text(
        "".join(
            f"{key} {value}\n"
            for key, values in options.items()
            for value in ([values] if isinstance(values, str) else values)
        )
    )
    process = subprocess.Popen(
        ["/usr/bin/tor", "--defaults-torrc", os.devnull, "-f", str(torrc)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(START_DEADLINE):
            for _ in range(600):
                if port_file.exists() and "PORT=" in port_file.read_text():
                    break
                await trio.sleep(0.1)
            port = int(port_file.read_text().strip().rsplit(":", 1)[1])
            for _ in range(2):
                async with open_tor(TorConfig(control_port=port)) as tor:
                    assert (await tor.health()).control_connected
                await trio.sleep(1)
                assert process.poll() is None, "tor exited when we disconnected"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.tor
async def test_attach_wrong_password(testnet: Network) -> None:
    node = testnet.clients()[0]
    assert node.control_port is not None
    config = TorConfig(control_port=node.control_port, password="not-the-password")
    with trio.fail_after(START_DEADLINE), pytest.raises(TorControlError, match="authentication"):
        async with open_tor(config):
            pass


async def test_attach_nothing_listening() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with trio.fail_after(START_DEADLINE), pytest.raises(TorControlError):
            async with open_tor(TorConfig(control_port=port)):
                pass


@pytest.mark.tor
async def test_tor_dying_at_start(testnet: Network, tmp_path: Path) -> None:
    with trio.socket.socket() as busy:
        await busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # A listener tor cannot bind makes it exit before bootstrapping.
        options = testnet.tor_options() | {"HTTPTunnelPort": f"127.0.0.1:{port}"}
        config = TorConfig(data_dir=tmp_path / "a", extra_options=options)
        with trio.fail_after(START_DEADLINE), pytest.raises(TorLaunchError, match="did not start"):
            async with open_tor(config):
                pass


@pytest.mark.tor
async def test_bad_torrc_option(testnet: Network, tmp_path: Path) -> None:
    options = testnet.tor_options() | {"NoSuchTorOption": "1"}
    config = TorConfig(data_dir=tmp_path / "a", extra_options=options)
    with trio.fail_after(START_DEADLINE), pytest.raises(TorLaunchError):
        async with open_tor(config):
            pass


@pytest.mark.tor
async def test_supervise_relaunches_after_sigkill(testnet: Network, tmp_path: Path) -> None:
    seed, _ = identity()
    b_private, b_public = x25519_keypair()
    with trio.fail_after(START_DEADLINE + RESTORE_DEADLINE):
        async with (
            echo_server() as target,
            open_tor(launch_config(tmp_path / "a", testnet)) as a,
            open_tor(launch_config(tmp_path / "b", testnet)) as b,
            trio.open_nursery() as nursery,
        ):
            states: list[TorState] = []

            async def watch() -> None:
                async for status in a.events():
                    states.append(status.state)

            nursery.start_soon(watch)
            await nursery.start(a.supervise)
            service = await a.publish(
                seed, virtual_port=443, target=target, authorized_clients=[b_public]
            )
            await b.add_client_auth(service.address, b_private)
            async with await b.dial(service.address, 443) as stream:
                await round_trip(stream, b"before")

            old_pid = a.pid
            assert old_pid is not None
            os.kill(old_pid, signal.SIGKILL)
            started = time.monotonic()
            with trio.fail_after(RESTORE_DEADLINE):
                for _ in range(1000):
                    health = await a.health()
                    if health.restarts == 1 and health.state is TorState.OK:
                        break
                    await trio.sleep(0.1)
                restored = time.monotonic() - started
                assert a.pid not in (None, old_pid)
                assert [s.descriptor for s in health.services] == [DescriptorState.PUBLISHED]
                # B still holds its rendezvous circuit to the dead tor, and tor puts
                # a new stream on it. When the teardown reached B, the dial fails
                # (or the old introduction points refuse): retry. When it did not,
                # the dial hangs until tor gives up on it (SocksTimeout, 2 min),
                # and so would the next one: drop B's circuits to the service and
                # ask for its new descriptor, as OnionHost.dial does.
                hung = 0
                for attempt in range(60):
                    after: trio.SocketStream | None = None
                    with trio.move_on_after(DIAL_ATTEMPT_SECONDS):
                        try:
                            after = await b.dial(service.address, 443)
                        except DialError:
                            if attempt == 59:
                                raise
                            await trio.sleep(0.5)
                            continue
                    if after is None:
                        hung += 1
                        await b.drop_circuits(service.address)
                        await b.refetch_descriptor(service.address)
                        continue
                    async with after:
                        await round_trip(after, b"after")
                    break
            print(
                f"restored {restored:.2f} s after SIGKILL, "
                f"dialable again {time.monotonic() - started:.2f} s after ({hung} dials hung)"
            )
            assert TorState.RESTARTING in states
            assert states[-1] is TorState.OK
            nursery.cancel_scope.cancel()


@pytest.mark.tor
async def test_drop_circuits_frees_a_dial_hung_on_a_silent_rendezvous(
    testnet: Network, tmp_path: Path
) -> None:
    """A stopped service tor keeps its circuits up but answers nothing: what a
    client sees when a dead service's teardown did not come back to it. B's
    next dial goes to the rendezvous circuit it has and hangs; drop_circuits
    closes B's circuits to the service, which fails that dial at once."""
    seed, _ = identity()
    b_private, b_public = x25519_keypair()
    with trio.fail_after(START_DEADLINE + PUBLISH_DEADLINE + 2 * DIAL_DEADLINE):
        async with (
            echo_server() as target,
            open_tor(launch_config(tmp_path / "a", testnet)) as a,
            open_tor(launch_config(tmp_path / "b", testnet)) as b,
        ):
            service = await a.publish(
                seed, virtual_port=443, target=target, authorized_clients=[b_public]
            )
            await b.add_client_auth(service.address, b_private)
            async with await b.dial(service.address, 443) as stream:
                await round_trip(stream, b"before")
            a_pid = a.pid
            assert a_pid is not None
            os.kill(a_pid, signal.SIGSTOP)
            try:
                outcome: list[str] = []

                async def hung_dial() -> None:
                    try:
                        stream = await b.dial(service.address, 443)
                    except DialError as exc:
                        outcome.append(exc.reason)
                        return
                    await stream.aclose()
                    outcome.append("connected")

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(hung_dial)
                    # Without an answer tor would hold it for SocksTimeout (2 min).
                    await trio.sleep(DIAL_ATTEMPT_SECONDS / 3)
                    assert outcome == []
                    assert await b.drop_circuits(service.address) >= 1
                    with trio.fail_after(QUICK_FAILURE_DEADLINE):
                        while not outcome:
                            await trio.sleep(0.05)
                assert outcome != ["connected"]
            finally:
                os.kill(a_pid, signal.SIGCONT)
            # B builds a new circuit to the service, which answers again.
            with trio.fail_after(DIAL_DEADLINE):
                async with await b.dial(service.address, 443) as stream:
                    await round_trip(stream, b"after")
