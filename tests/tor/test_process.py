"""What the adapter and the private test network share (onionpost.tor): stopping tor
processes, log tails, the bootstrap parser and the synchronous control probe. No tor here."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onionpost.errors import TorControlError
from onionpost.tor import ControlProbe, bootstrap_progress, stop_processes, tail_lines
from onionpost.tor._process import TAIL_MAX_BYTES

# Ignores SIGTERM, so only SIGKILL ends it.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print(1, flush=True); time.sleep(60)"
)


def _gone(pid: int) -> bool:
    """No such process, or a zombie: it has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}


def _child(code: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"1\n"  # its handler is in place
    return process


def test_stop_processes_terminates_then_kills() -> None:
    polite = _child("print(1, flush=True); import time; time.sleep(60)")
    stubborn = _child(STUBBORN)
    started = time.monotonic()
    survivors = stop_processes(
        {p.pid: (lambda p=p: p.poll() is None) for p in (polite, stubborn)},
        term_grace=0.5,
        kill_grace=3.0,
    )
    assert survivors == set()
    assert polite.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 3.0


def test_stop_processes_signals_a_whole_process_group() -> None:
    # A leader and its child in one session, as a daemon and its tor.
    leader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time;"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            "print(child.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    assert stop_processes({leader.pid: lambda: leader.poll() is None}, process_groups=True) == set()
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_stop_processes_leaves_what_is_not_ours() -> None:
    # The check says "not the process meant" (a recycled pid): no signal at all.
    process = _child("print(1, flush=True); import time; time.sleep(60)")
    try:
        assert stop_processes({process.pid: lambda: False}, term_grace=0.1) == set()
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


def test_tail_lines_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "notice.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert log.stat().st_size > TAIL_MAX_BYTES
    assert tail_lines(log, 2) == ["line 99998", "line 99999"]
    assert len(tail_lines(log, 10**6)) < 100_000
    assert tail_lines(tmp_path / "missing", 5) == []


@pytest.mark.parametrize(
    ("phase", "progress"),
    [
        ('NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"', 100),
        ('NOTICE BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting"', 5),
        ("NOTICE BOOTSTRAP TAG=starting", None),
        ("", None),
    ],
)
def test_bootstrap_progress(phase: str, progress: int | None) -> None:
    assert bootstrap_progress(phase) == progress


def test_a_probe_of_a_closed_port_is_a_control_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(TorControlError, match="cannot reach"):
            ControlProbe(port, deadline=time.monotonic() + 5)
