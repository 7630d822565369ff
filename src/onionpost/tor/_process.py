"""tor processes from the outside: stopping them, the end of their logs, their sockets.

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

:func:`tcp_listeners` finds the TCP sockets a set of processes listens on,
from Linux's ``/proc`` (``/proc/<pid>/fd`` links ``socket:[<inode>]``;
``/proc/net/tcp`` and ``tcp6`` list sockets by inode, state ``0A`` being
LISTEN): what ``onionpost doctor`` reports and the hardening test checks
(spec §1.2: neither the daemon nor its tor listens on TCP).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "KILL_GRACE_SECONDS",
    "STOP_GRACE_SECONDS",
    "TcpListener",
    "stop_processes",
    "tail_lines",
    "tcp_listeners",
]

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


@dataclass(frozen=True, order=True)
class TcpListener:
    """A TCP socket in LISTEN state held by process ``pid``."""

    pid: int
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port} (pid {self.pid})"


_TCP_LISTEN: Final = "0A"
#: /proc/<pid>/fd entries looked at per process, at most.
MAX_FDS_SCANNED: Final = 65536


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for count, entry in enumerate(os.scandir(f"/proc/{pid}/fd")):
            if count >= MAX_FDS_SCANNED:
                break
            with contextlib.suppress(OSError):
                target = os.readlink(entry.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _proc_address(hex_address: str) -> str:
    # /proc/net/tcp: "0100007F:1F90" is 127.0.0.1:8080; each 32-bit word is
    # in host (here little-endian) order.
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def tcp_listeners(pids: Iterable[int]) -> list[TcpListener]:
    """The TCP sockets (IPv4 and IPv6) that any of ``pids`` listens on, from /proc.

    ``/proc/net/tcp`` lines (``sl local_address rem_address st ... inode``)::

        0: 0100007F:A1B2 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 123456 ...

    A process that is gone, or whose fds we may not read, contributes nothing.
    """
    owner: dict[str, int] = {}
    for pid in pids:
        for inode in _socket_inodes(pid):
            owner[inode] = pid
    found: set[TcpListener] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            with open(table, encoding="ascii") as file:
                lines = file.read().splitlines()[1:]
            for line in lines:
                fields = line.split()
                if len(fields) < 10 or fields[3] != _TCP_LISTEN or fields[9] not in owner:
                    continue
                address, _, port = fields[1].partition(":")
                with contextlib.suppress(ValueError):
                    found.add(TcpListener(owner[fields[9]], _proc_address(address), int(port, 16)))
    return sorted(found)
