"""The host's shared pieces without tor: the failure vocabulary, the start-up,
and what an OnionHost does before (or without) its tor."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from onionpost import api
from onionpost.errors import (
    AuthenticationError,
    CloseCode,
    ConfigError,
    DialError,
    MailboxRefusedError,
    MessageDecodeError,
    NoSpaceError,
    OnionpostError,
    QuotaError,
    RemoteProtocolError,
    StoreError,
    StoreLockedError,
    TorError,
    TransportError,
)
from onionpost.home import Config, Paths, Secrets
from onionpost.host import (
    EventHub,
    OnionHost,
    SecretSource,
    Shed,
    check_primitives,
    code_name,
    first_failure,
    home_lock,
    reason,
)
from onionpost.host._forget import FORGET_SECONDS
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import CERT_LIFETIME
from onionpost.tor import TorState, TorStatus

# The one vocabulary: every failure a log line or `status` reports, by kind.
VOCABULARY: list[tuple[BaseException, str]] = [
    (Shed("idle", code=CloseCode.NORMAL, reason="idle"), "idle"),
    (DialError("no descriptor", reason="descriptor-not-found"), "descriptor-not-found"),
    (DialError("no answer", reason="timeout"), "timeout"),
    (
        MailboxRefusedError("full", code=m.MbCode.QUOTA_EXCEEDED),
        "mailbox-quota-exceeded",
    ),
    (MailboxRefusedError("odd", code=250), "mailbox-250"),
    (RemoteProtocolError("junk"), "protocol-protocol-error"),
    (MessageDecodeError("not ours"), "protocol-bad-message"),
    (AuthenticationError("handshake failed"), "protocol-authentication-failed"),
    (TransportError("late", reason="timeout"), "timeout"),
    (TransportError("dropped us", reason="refused"), "refused"),
    (TransportError("the stream ended without a Close", reason="ended"), "stream-ended"),
    (TransportError("the stream failed", reason="broken"), "stream-broken"),
    (TransportError("a text that says timeout"), "stream-broken"),  # the text is never read
    (NoSpaceError("disk full"), "our-disk-full"),
    (QuotaError("too many", quota="transfers", limit=4), "our-store-failed"),
    (StoreError("corrupt"), "our-store-failed"),
    (ConfigError("bad"), "ConfigError"),
    (TorError("tor is not running"), "TorError"),
    (ValueError("a bug"), "internal-ValueError"),
]


@pytest.mark.parametrize(("exc", "word"), VOCABULARY, ids=[w for _, w in VOCABULARY])
def test_every_failure_has_one_word(exc: BaseException, word: str) -> None:
    assert reason(exc) == word


def test_a_transport_error_is_broken_unless_told() -> None:
    assert TransportError("x").reason == "broken"
    assert TransportError("x", reason="ended").reason == "ended"


def test_code_names() -> None:
    assert code_name(CloseCode, CloseCode.RATE_LIMITED) == "rate-limited"
    assert code_name(CloseCode, 99) == "99"
    assert code_name(CloseCode, None) == "none"
    assert code_name(m.MbCode, m.MbCode.CODE_REFUSED) == "code-refused"


def test_shed_is_ours_and_carries_its_close() -> None:
    shed = Shed("too many sessions", code=CloseCode.RATE_LIMITED, reason="too-many-sessions")
    assert isinstance(shed, OnionpostError)
    assert (shed.code, shed.reason, str(shed)) == (
        CloseCode.RATE_LIMITED,
        "too-many-sessions",
        "too many sessions",
    )


def test_first_failure_skips_the_broken_streams_around_it() -> None:
    telling = MessageDecodeError("junk")
    group = ExceptionGroup(
        "session", [TransportError("x", reason="broken"), ExceptionGroup("inner", [telling])]
    )
    assert first_failure(group) is telling
    only = TransportError("x", reason="ended")
    assert first_failure(ExceptionGroup("session", [only])) is only


# -- start-up ---------------------------------------------------------------------------


def test_the_self_test_passes_here() -> None:
    check_primitives()


def test_a_second_process_on_a_home_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "daemon.lock"
    with home_lock(lock), pytest.raises(StoreLockedError, match="already running"):
        home_lock(lock).__enter__()  # refused: never held
    with home_lock(lock) as handle:  # free again
        assert not handle.closed


def test_a_secret_source_never_shows_its_passphrase() -> None:
    source = SecretSource(passphrase="correct horse battery staple")
    assert "correct horse" not in repr(source)
    assert source.key_file is None


# -- the host before its tor ------------------------------------------------------------


def _host(tmp_path: Path, now: int) -> tuple[OnionHost, Secrets, list[logging.LogRecord]]:
    secrets = Secrets.generate("test", now=now)
    records: list[logging.LogRecord] = []
    log = logging.getLogger("onionpost.test-host")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log.addHandler(Keep())
    log.setLevel(logging.INFO)
    host = OnionHost(
        Paths.for_home(tmp_path), secrets, Config(), clients=list, hub=EventHub(), log=log
    )
    return host, secrets, records


async def test_without_tor_the_host_says_so(tmp_path: Path) -> None:
    host, secrets, _ = _host(tmp_path, 1_700_000_000)
    assert host.tor_status == api.TorStatus("starting", "launching tor")
    assert not host.published
    with pytest.raises(TorError, match="not published"):
        await host.authorize()
    with pytest.raises(TorError, match="not running"):
        await host.dial(secrets.identity.address)
    # Client keys for later: nothing to tell a tor that is not running.
    await host.add_client_auth(secrets.identity.address, bytes(32))
    await host.remove_client_auth(secrets.identity.address)
    host.ready()
    assert host.tor_status.state == "ok"


async def test_the_static_key_is_renewed_when_due(tmp_path: Path) -> None:
    now = 1_700_000_000
    host, secrets, records = _host(tmp_path, now)
    first = secrets.static
    assert not host.renew_static_key(now)
    assert secrets.static is first
    assert host.renew_static_key(now + CERT_LIFETIME)
    assert secrets.static is not first
    assert [r.getMessage() for r in records] == ["event=static_key_rotated"]
    await trio.lowlevel.checkpoint()


class _SilentTor:
    """A tor whose dials hang (a rendezvous circuit whose far side is gone)
    or fail with ``reason``; it records what the host asks of it."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        self.calls: list[str] = []

    async def dial(self, address: object, port: int) -> trio.SocketStream:
        self.calls.append("dial")
        if self.reason is not None:
            raise DialError("tor says no", reason=self.reason)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def drop_circuits(self, address: object) -> int:
        self.calls.append("drop_circuits")
        return 1

    async def refetch_descriptor(self, address: object) -> None:
        self.calls.append("refetch_descriptor")


@pytest.mark.parametrize(
    ("reason", "calls"),
    [
        # Hung: the next dial would go to the same dead circuit, so it goes too.
        (None, ["dial", "drop_circuits", "refetch_descriptor"]),
        # Refused at the introduction: a stale descriptor, the circuits are fine.
        ("introduction-failed", ["dial", "refetch_descriptor"]),
        ("host-unreachable", ["dial"]),
    ],
)
async def test_a_dial_tor_did_not_answer_drops_our_circuits_to_the_service(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, reason: str | None, calls: list[str]
) -> None:
    host, secrets, records = _host(tmp_path, 1_700_000_000)
    tor = _SilentTor(reason)
    host._tor = tor  # type: ignore[assignment]
    started = trio.current_time()
    with pytest.raises(DialError) as failed:
        await host.dial(secrets.identity.address)
    assert failed.value.reason == (reason or "timeout")
    assert tor.calls == calls
    if reason is None:
        # Half the connect deadline for tor; the rest is the caller's.
        assert trio.current_time() - started == pytest.approx(Config().connect_timeout / 2)
        assert [r.getMessage() for r in records][:1] == [
            "event=circuits_dropped count=1 peer=onion"
        ]


class _ForgetfulTor:
    """A tor that refuses dials for their introduction points (SOCKS 0xF2)
    until it is made to forget its client state, as a record of failed
    introduction points does; it records what the host asks of it."""

    def __init__(self, *, forget_fails: bool = False) -> None:
        self.stale = True
        self.forget_fails = forget_fails
        self.calls: list[str] = []

    async def dial(self, address: object, port: int) -> object:
        self.calls.append("dial")
        if self.stale:
            raise DialError("tor says no", reason="introduction-failed")
        return f"stream to {port}"

    async def forget_client_state(self) -> None:
        self.calls.append("forget")
        if self.forget_fails:
            raise TorError("tor did not answer")
        self.stale = False


async def _refused(host: OnionHost, tor: _ForgetfulTor, address: OnionAddress) -> None:
    with pytest.raises(DialError) as failed:
        await host._tor_dial(tor, address, "peer=onion")  # type: ignore[arg-type]
    assert failed.value.reason == "introduction-failed"


async def test_a_second_refusal_at_the_introduction_makes_tor_forget_then_dials_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    host, secrets, records = _host(tmp_path, 1_700_000_000)
    address = secrets.identity.address
    tor = _ForgetfulTor()
    # The first refusal is the contact's own (its service may be down).
    await _refused(host, tor, address)
    assert tor.calls == ["dial"]
    # The second in a row: tor's record may be what refuses it.
    stream = await host._tor_dial(tor, address, "peer=onion")  # type: ignore[arg-type]
    assert stream == f"stream to {Config().onion_port}"
    assert tor.calls == ["dial", "dial", "forget", "dial"]
    assert [r.getMessage() for r in records] == ["event=tor_client_state_forgotten peer=onion"]
    # Another address refused twice within FORGET_SECONDS: no second forget.
    other = Secrets.generate("other", now=1_700_000_000).identity.address
    tor.stale, tor.calls = True, []
    await _refused(host, tor, other)
    await _refused(host, tor, other)
    assert tor.calls == ["dial", "dial"]
    # Once FORGET_SECONDS have passed, it may forget again.
    await trio.sleep(FORGET_SECONDS)
    await host._tor_dial(tor, other, "peer=onion")  # type: ignore[arg-type]
    assert tor.calls == ["dial", "dial", "dial", "forget", "dial"]


async def test_a_tor_we_attached_to_is_never_made_to_forget(tmp_path: Path) -> None:
    secrets = Secrets.generate("test", now=1_700_000_000)
    config = Config(tor_mode="attach", tor_control_port=9051)
    log = logging.getLogger("onionpost.test-host")
    host = OnionHost(
        Paths.for_home(tmp_path), secrets, config, clients=list, hub=EventHub(), log=log
    )
    tor = _ForgetfulTor()
    for _ in range(3):
        await _refused(host, tor, secrets.identity.address)
    assert tor.calls == ["dial"] * 3


async def test_a_forget_tor_refuses_fails_the_dial_as_it_was_refused(tmp_path: Path) -> None:
    host, secrets, records = _host(tmp_path, 1_700_000_000)
    tor = _ForgetfulTor(forget_fails=True)
    await _refused(host, tor, secrets.identity.address)
    await _refused(host, tor, secrets.identity.address)
    assert tor.calls == ["dial", "dial", "forget"]
    assert [r.getMessage() for r in records] == ["event=tor_forget_failed error=TorError"]


async def test_tor_back_up_with_our_service_says_published_as_at_start(tmp_path: Path) -> None:
    """What tor reports reaches status as it is, except that OK with our
    service published (a restarted tor has it republished first) reads as
    at start; tor_back runs on each return to OK."""
    secrets = Secrets.generate("test", now=1_700_000_000)
    back: list[str] = []
    host = OnionHost(
        Paths.for_home(tmp_path),
        secrets,
        Config(),
        clients=list,
        hub=EventHub(),
        log=logging.getLogger("onionpost.test-host"),
        tor_back=lambda: back.append(host.tor_status.detail),
    )
    send, receive = trio.open_memory_channel[TorStatus](8)

    class _Reporting:
        def events(self) -> trio.MemoryReceiveChannel[TorStatus]:
            return receive

    seen: list[api.TorStatus] = []

    async def step(status: TorStatus) -> None:
        before = host.tor_status
        await send.send(status)
        with trio.fail_after(5):
            while host.tor_status == before:
                await trio.lowlevel.checkpoint()
        seen.append(host.tor_status)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(host._forward_tor_events, _Reporting())
        await step(TorStatus(TorState.OK, "tor is up"))  # not published yet
        host._tor, host._service = object(), object()  # type: ignore[assignment]
        await step(TorStatus(TorState.RESTARTING, "relaunching tor"))
        await step(TorStatus(TorState.OK, "tor is up"))
        await step(TorStatus(TorState.DEGRADED, "tor reports the network down"))
        nursery.cancel_scope.cancel()
    assert seen == [
        api.TorStatus(api.TorState.OK, "tor is up"),
        api.TorStatus(api.TorState.RESTARTING, "relaunching tor"),
        api.TorStatus(api.TorState.OK, "published"),
        api.TorStatus(api.TorState.DEGRADED, "tor reports the network down"),
    ]
    assert back == ["tor is up", "published"]
