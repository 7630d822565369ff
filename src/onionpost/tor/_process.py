"""tor processes from the outside: stopping them, and the end of their logs.

Shared by the adapter (one tor of ours, :mod:`onionpost.tor._tor`) and the
private test network (many, :mod:`onionpost.testing.testnet`). Synchronous,
bounded in time, and never raising: the adapter runs :func:`stop_processes`
in a worker thread.

Stopping is SIGTERM, a grace period for tor to close its listeners and
files, then SIGKILL for what is left. A pid is signalled only while the
caller's check says it is still the process meant: for a child of ours,
``Popen.poll() is None`` (an unreaped child's pid cannot be reused); for a
tor started by another process, that its command line still names its
torrc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

__all__ = ["KILL_GRACE_SECONDS", "STOP_GRACE_SECONDS", "stop_processes", "tail_lines"]

#: SIGTERM, then SIGKILL what is still running after this.
STOP_GRACE_SECONDS: Final = 5.0
#: After SIGKILL, how long to wait for the processes to be gone.
KILL_GRACE_SECONDS: Final = 3.0
#: A log's tail is taken from at most its last this many bytes.
TAIL_MAX_BYTES: Final = 64 * 1024

_POLL_SECONDS: Final = 0.05


def stop_processes(
    targets: Mapping[int, Callable[[], bool]],
    *,
    term_grace: float = STOP_GRACE_SECONDS,
    kill_grace: float = KILL_GRACE_SECONDS,
    process_groups: bool = False,
) -> set[int]:
    """Stop the processes in ``targets`` (pid -> "is it still running?").

    SIGTERM each that runs, SIGKILL each that still runs after ``term_grace``
    seconds; return the pids still running ``kill_grace`` seconds after that
    (none, unless the kernel is stuck). With ``process_groups`` each pid
    leads its own process group (``start_new_session``) and the signals go to
    the whole group: a daemon and the tor it launched, say. Never raises.
    """
    send = os.killpg if process_groups else os.kill
    alive = _signal_all(targets, set(targets), signal.SIGTERM, send)
    alive = _wait_gone(targets, alive, term_grace)
    alive = _signal_all(targets, alive, signal.SIGKILL, send)
    return _wait_gone(targets, alive, kill_grace)


def _signal_all(
    targets: Mapping[int, Callable[[], bool]],
    pids: set[int],
    signum: signal.Signals,
    send: Callable[[int, int], None],
) -> set[int]:
    signalled: set[int] = set()
    for pid in pids:
        if targets[pid]():
            with contextlib.suppress(ProcessLookupError):
                send(pid, signum)
                signalled.add(pid)
    return signalled


def _wait_gone(targets: Mapping[int, Callable[[], bool]], pids: set[int], grace: float) -> set[int]:
    end = time.monotonic() + grace
    alive = set(pids)
    # Bounded: one poll per _POLL_SECONDS until the deadline.
    for _ in range(int(grace / _POLL_SECONDS) + 2):
        alive = {pid for pid in alive if targets[pid]()}
        if not alive or time.monotonic() >= end:
            break
        time.sleep(_POLL_SECONDS)
    return alive


def tail_lines(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of the file at ``path`` (``[]`` if it cannot be read).

    Reads at most :data:`TAIL_MAX_BYTES` from its end, however long the log grew.
    """
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - TAIL_MAX_BYTES))
            data = file.read(TAIL_MAX_BYTES)
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]
