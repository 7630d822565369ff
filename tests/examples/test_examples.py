"""The examples: echo_bot and file_drop against the API server, and the systemd unit.

The bots run for real, over a real unix socket, against the daemon's API
server over the in-memory backend (onionpost.testing.doubles): in this trio
run for the behaviour, and as processes for what a user sees at the end (the
exit status and the one line saying why).
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType

import pytest
import trio

from onionpost.host import serve_api
from onionpost.limits import MAX_TEXT_BODY
from onionpost.testing.doubles import MemoryBackend, ServerThread, short_tmpdir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


echo_bot = _load("echo_bot")
file_drop = _load("file_drop")

Served = tuple[MemoryBackend, Path]


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[Served]:
    """A home whose run/control.sock is served; the backend knows contact 'bob'."""
    with short_tmpdir() as home:
        backend = MemoryBackend()
        backend.add("bob")
        await nursery.start(serve_api, backend, home / "run" / "control.sock")
        yield backend, home


async def _until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    with trio.move_on_after(seconds):
        while not condition():
            await trio.sleep(0.01)
        return
    pytest.fail(f"timed out waiting for {what}")


def _sent(backend: MemoryBackend) -> list[tuple[str, str]]:
    return [
        (m["contact"], m["body"])
        for m in backend.messages.values()
        if m["direction"] == "out" and m["kind"] == "text"
    ]


# -- echo_bot --------------------------------------------------------------------------


async def test_echo_bot_replies_to_the_sender_and_marks_read(
    served: Served, nursery: trio.Nursery
) -> None:
    backend, home = served
    nursery.start_soon(echo_bot.run, home)
    await _until(lambda: backend.live_subscribers() == 1, "the bot to subscribe")

    first = backend.receive_text("bob", "hello, bot")
    await _until(lambda: first["id"] in backend.marked, "the first text to be marked read")
    assert _sent(backend) == [("bob", "echo: hello, bot")]

    # A file is not answered; an echo is marked read, never echoed back.
    backend.receive_file("bob", "scan.png", b"\x89PNG")
    echo = backend.receive_text("bob", "echo: hello, bot")
    last = backend.receive_text("bob", "second")
    await _until(lambda: last["id"] in backend.marked, "the last text to be marked read")
    assert backend.marked == [first["id"], echo["id"], last["id"]]
    assert _sent(backend) == [("bob", "echo: hello, bot"), ("bob", "echo: second")]
    nursery.cancel_scope.cancel()


async def test_echo_bot_replies_under_the_label_it_was_sent(
    served: Served, nursery: trio.Nursery
) -> None:
    """An echo of a TLP:RED text is TLP:RED, not the default (TLP:AMBER)."""
    backend, home = served
    nursery.start_soon(echo_bot.run, home)
    await _until(lambda: backend.live_subscribers() == 1, "the bot to subscribe")
    red = backend.receive_text("bob", "eyes only", label="TLP:RED")
    await _until(lambda: red["id"] in backend.marked, "the text to be marked read")
    (reply,) = [m for m in backend.messages.values() if m["direction"] == "out"]
    assert (reply["body"], reply["label"]) == ("echo: eyes only", "TLP:RED")
    nursery.cancel_scope.cancel()


async def test_echo_bot_stops_after_max_replies(served: Served) -> None:
    backend, home = served
    async with trio.open_nursery() as nursery:

        async def feed() -> None:
            await _until(lambda: backend.live_subscribers() == 1, "the bot to subscribe")
            for body in ("one", "two", "three"):
                backend.receive_text("bob", body)

        nursery.start_soon(feed)
        with trio.fail_after(5):
            assert await echo_bot.run(home, 2) == 2
    assert [body for _, body in _sent(backend)] == ["echo: one", "echo: two"]


def test_echo_replies_are_bounded() -> None:
    assert echo_bot.reply_to("hi") == "echo: hi"
    assert echo_bot.reply_to("echo: hi") is None
    reply = echo_bot.reply_to("é" * MAX_TEXT_BODY)
    assert reply is not None
    assert len(reply.encode("utf-8")) <= MAX_TEXT_BODY
    assert reply.startswith("echo: éé")
    assert set(reply[len("echo: ") :]) == {"é"}  # no half character at the cut


def _run_example(name: str, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


def test_echo_bot_says_when_the_daemon_is_missing_or_goes_away() -> None:
    with short_tmpdir() as home:
        missing = _run_example("echo_bot", "--home", home)
        _, err = missing.communicate(timeout=30)
        assert missing.returncode == 3
        assert _last_line(err) == (
            f"echo_bot: no daemon is listening on {home}/run/control.sock: "
            "start 'onionpost daemon' for this home"
        )

        backend = MemoryBackend()
        backend.add("bob")
        with ServerThread(backend, home / "run" / "control.sock") as server:
            bot = _run_example("echo_bot", "--home", home)
            try:
                deadline = time.monotonic() + 20
                while server.call(backend.live_subscribers) == 0:
                    assert bot.poll() is None, bot.communicate()
                    assert time.monotonic() < deadline, "the bot did not subscribe"
                    time.sleep(0.05)
                message = server.call(backend.receive_text, "bob", "ping")
                while message["id"] not in server.call(lambda: list(backend.marked)):
                    assert time.monotonic() < deadline, "the bot did not answer"
                    time.sleep(0.05)
            except BaseException:
                bot.kill()
                raise
        # The server is gone: the bot says so and exits 3.
        _, err = bot.communicate(timeout=20)
        assert bot.returncode == 3, err
        assert _last_line(err).startswith("echo_bot: lost the daemon: ")
        assert _last_line(err).endswith("Run the bot again once the daemon is back.")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_bots_stop_cleanly_on_sigterm_as_on_ctrl_c(stop: signal.Signals) -> None:
    """systemd stops a service with SIGTERM: each bot says its last line and
    exits 0, as on Ctrl-C (Python's default for SIGTERM ends it mid-way,
    without a word)."""
    with short_tmpdir() as home:
        backend = MemoryBackend()
        backend.add("bob")
        with ServerThread(backend, home / "run" / "control.sock") as server:
            server.call(backend.receive_text, "bob", "early")
            bots = {
                "echo_bot": _run_example("echo_bot", "--home", home),
                "file_drop": _run_example("file_drop", "--home", home, "--drop", home / "drop"),
            }
            try:
                deadline = time.monotonic() + 20
                while server.call(backend.live_subscribers) < len(bots):
                    for bot in bots.values():
                        assert bot.poll() is None, bot.communicate()
                    assert time.monotonic() < deadline, "the bots did not subscribe"
                    time.sleep(0.05)
                message = server.call(backend.receive_text, "bob", "ping")
                while message["id"] not in server.call(lambda: list(backend.marked)):
                    assert time.monotonic() < deadline, "the bot did not answer"
                    time.sleep(0.05)
                for bot in bots.values():
                    bot.send_signal(stop)
                ended = {name: bot.communicate(timeout=20) for name, bot in bots.items()}
            finally:
                for bot in bots.values():
                    bot.kill()
        for name, bot in bots.items():
            assert bot.returncode == 0, ended[name][1]
        assert _last_line(ended["echo_bot"][1]) == "echo_bot: stopped after 1 replies"
        assert _last_line(ended["file_drop"][1]).startswith("file_drop: took 2 messages")


# -- file_drop -------------------------------------------------------------------------


def _listing(drop: Path) -> dict[str, bytes]:
    """What a watcher sees: every published file (not the dot-files), by name."""
    return {p.name: p.read_bytes() for p in drop.iterdir() if not p.name.startswith(".")}


def _fill(backend: MemoryBackend) -> list[dict[str, object]]:
    return [
        backend.receive_text("bob", "the report is in"),
        backend.receive_file("bob", "../../etc/scan 1.png", b"\x89PNG data"),
        backend.receive_text("bob", "and one more \u202e"),
    ]


async def _drop_once(home: Path, drop: Path) -> int:
    taken: int = await file_drop.run(file_drop.Drop(drop, drop / file_drop.STATE_NAME), home, False)
    return taken


async def test_file_drop_writes_each_message_once_private(served: Served) -> None:
    backend, home = served
    got = _fill(backend)
    drop = home / "drop"
    drop.mkdir(mode=0o700)
    assert await _drop_once(home, drop) == 3

    stem = [f"{int(str(m['seq'])):012d}-{m['id']}" for m in got]
    listing = _listing(drop)
    assert sorted(listing) == sorted(
        [f"{stem[0]}.json", f"{stem[1]}.json", f"{stem[1]}-scan_1.png", f"{stem[2]}.json"]
    )
    text = json.loads(listing[f"{stem[0]}.json"])
    assert text["body"] == "the report is in"
    assert text["contact"] == "bob"
    assert text["kind"] == "text"
    assert text["seq"] == got[0]["seq"]
    assert json.loads(listing[f"{stem[2]}.json"])["body"] == "and one more \u202e"
    record = json.loads(listing[f"{stem[1]}.json"])
    assert record["file"] == {
        "name": "../../etc/scan 1.png",
        "size": 9,
        "saved_as": f"{stem[1]}-scan_1.png",
    }
    assert listing[f"{stem[1]}-scan_1.png"] == b"\x89PNG data"
    for path in drop.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not [p for p in drop.iterdir() if p.name.endswith(".part")]

    # Restarted: nothing again; then only what is new.
    assert await _drop_once(home, drop) == 0
    assert _listing(drop) == listing
    backend.receive_text("bob", "later")
    assert await _drop_once(home, drop) == 1
    assert len(_listing(drop)) == len(listing) + 1


async def test_file_drop_follows_new_messages_and_resumes(
    served: Served, nursery: trio.Nursery
) -> None:
    backend, home = served
    backend.receive_text("bob", "before the start")
    drop = home / "drop"
    drop.mkdir(mode=0o700)
    state = drop / file_drop.STATE_NAME
    following = trio.CancelScope()

    async def follow() -> None:
        with following:
            await file_drop.run(file_drop.Drop(drop, state), home)

    nursery.start_soon(follow)
    await _until(lambda: len(_listing(drop)) == 1, "the inbox to be taken")
    await _until(lambda: backend.live_subscribers() == 1, "the subscription")
    backend.receive_file("bob", "a.txt", b"a")
    backend.receive_text("bob", "while following")
    await _until(lambda: len(_listing(drop)) == 4, "the new messages")
    following.cancel()

    missed = backend.receive_text("bob", "while stopped")
    assert await _drop_once(home, drop) == 1
    assert len(_listing(drop)) == 5
    assert json.loads(state.read_text())["last_seq"] == missed["seq"]


async def test_file_drop_crash_between_saving_and_renaming(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, home = served
    _fill(backend)
    drop = home / "drop"
    drop.mkdir(mode=0o700)

    class Crash(Exception):
        pass

    def crash(*args: object) -> None:
        raise Crash

    # Crash before the state is saved: the message is done again from scratch.
    monkeypatch.setattr(file_drop, "save_state", crash)
    with pytest.raises(Crash):
        await _drop_once(home, drop)
    assert _listing(drop) == {}
    monkeypatch.undo()

    # Crash after the state is saved, before the renames: the restart finishes them.
    real_save = file_drop.save_state
    saved = 0

    def save_then_crash(path: Path, state: object) -> None:
        nonlocal saved
        real_save(path, state)
        saved += 1
        if saved == 2:  # the file's message: its file and record are pending
            raise Crash

    monkeypatch.setattr(file_drop, "save_state", save_then_crash)
    with pytest.raises(Crash):
        await _drop_once(home, drop)
    assert len(_listing(drop)) == 1
    monkeypatch.undo()

    assert await _drop_once(home, drop) == 1
    listing = _listing(drop)
    assert len(listing) == 4  # three records and the file, each exactly once
    assert not [p for p in drop.iterdir() if p.name.endswith(".part")]
    assert await _drop_once(home, drop) == 0
    assert _listing(drop) == listing


def test_file_drop_command_line() -> None:
    with short_tmpdir() as home:
        drop = home / "new" / "drop"
        backend = MemoryBackend()
        backend.add("bob")
        with ServerThread(backend, home / "run" / "control.sock") as server:
            server.call(backend.receive_text, "bob", "hello")
            for expected in (1, 0):
                once = _run_example("file_drop", "--home", home, "--drop", drop, "--once")
                _, err = once.communicate(timeout=30)
                assert once.returncode == 0, err
                assert _last_line(err).startswith(f"file_drop: took {expected} messages")
            assert stat.S_IMODE(drop.stat().st_mode) == 0o700
            assert len(_listing(drop)) == 1

            # A second copy on the same drop directory is refused.
            with file_drop.locked(drop / file_drop.LOCK_NAME):
                second = _run_example("file_drop", "--home", home, "--drop", drop, "--once")
                _, err = second.communicate(timeout=30)
            assert second.returncode == 1
            assert _last_line(err) == f"file_drop: another file_drop is using {drop}"

        gone = _run_example("file_drop", "--home", home, "--drop", drop)
        _, err = gone.communicate(timeout=30)
        assert gone.returncode == 3
        assert "no daemon is listening on" in _last_line(err)


# -- the systemd unit ------------------------------------------------------------------

UNIT = EXAMPLES / "onionpost.service"


def _unit() -> configparser.ConfigParser:
    # systemd units are INI-like; keys are case-sensitive and may repeat.
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_runs_the_daemon_with_a_key_file_as_its_own_user() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "simple"
    assert service["User"] == "onionpost"
    assert service["ExecStart"] == "/usr/local/bin/onionpost daemon --key-file /etc/onionpost/key"
    assert service["Restart"] == "on-failure"
    assert service["Environment"] == "ONIONPOST_HOME=/var/lib/onionpost"
    assert service["UMask"] == "0077"
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def test_unit_is_hardened() -> None:
    service = _unit()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "ReadWritePaths": "/var/lib/onionpost",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    }
    assert {key: service.get(key) for key in expected} == expected


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze_verify() -> None:
    with short_tmpdir() as tmp:
        # verify wants ExecStart's program to exist: point it at a real one.
        unit = tmp / "onionpost.service"
        unit.write_text(UNIT.read_text().replace("/usr/local/bin/onionpost", sys.executable))
        result = subprocess.run(
            ["systemd-analyze", "verify", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
        )
    problems = [line for line in result.stderr.splitlines() if "onionpost.service" in line]
    assert result.returncode == 0, result.stderr
    assert problems == [], result.stderr
