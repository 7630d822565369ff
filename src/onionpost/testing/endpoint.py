"""An onionpost endpoint on the private Tor network, driven as an operator drives one.

::

    net = testnet.up(directory, clients=0, owner_pid=os.getpid())
    alice, bob = Endpoint(root, "alice", net), Endpoint(root, "bob", net)
    start_all([alice, bob])          # each daemon up, its onion service published
    alice.cli("contact", "add", bob.json("whoami")["card"])
    sent = alice.json("send", "bob", "hello")
    ...
    alice.kill()                     # kill -9 of the daemon and its tor: a real crash
    alice.start()                    # back, on the same home
    alice.terminate()                # SIGTERM to the daemon alone: it closes its sessions
    alice.stop()

Theory of operation
-------------------
An :class:`Endpoint` is a home directory ``<root>/<name>``, made by
``onionpost init --key-file <root>/<name>.key``, whose ``config.toml`` gets
the network's ``[tor.options]`` (so the daemon's own tor joins it) and short
retry delays (``retry_initial = 1``, ``retry_max = 5``, so a test does not
wait minutes for a peer that came back). Everything goes through the
``onionpost`` command in a child process, exactly as an operator types it.
Its secrets are sealed with a key file, which needs no passphrase KDF, so
nothing here weakens a key.

The daemon runs as ``onionpost daemon`` in a session of its own, so it leads
a process group that also holds the tor it launches: :meth:`Endpoint.kill`
(SIGKILL) and :meth:`Endpoint.stop` (SIGTERM, then SIGKILL after a grace)
take both. Its output is appended to ``<root>/<name>-daemon.log`` across
restarts; it is ready when the part written since the last start says
``daemon ready``. Every wait has a deadline; a failure raises
:class:`EndpointError` with the end of that log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from onionpost.testing.testnet import Testnet
from onionpost.tor import stop_processes, tail_lines

__all__ = ["CLI_SECONDS", "READY_SECONDS", "STOP_SECONDS", "Endpoint", "EndpointError", "start_all"]

#: A daemon must say "daemon ready" (tor bootstrapped, service published) within this.
READY_SECONDS: Final = 120.0
#: One ``onionpost`` command must finish within this.
CLI_SECONDS: Final = 120.0
#: SIGTERM, then SIGKILL what is still running after this.
STOP_SECONDS: Final = 30.0

#: Top-level keys of config.toml; they go before the file's first table.
FAST_RETRY: Final = "retry_initial = 1.0\nretry_max = 5.0\n"
READY_LINE: Final = b"daemon ready"

_POLL_SECONDS: Final = 0.2
_LOG_TAIL_LINES: Final = 40
# How much of the log is searched for the ready line per poll.
_SCAN_BYTES: Final = 1 << 20


class EndpointError(RuntimeError):
    """An endpoint did not do what the test, demo or benchmark needed."""


class Endpoint:
    """One endpoint's home and its daemon process; see the module docstring."""

    #: The line its daemon writes once it is ready (a subclass runs another command).
    ready_line: bytes = READY_LINE

    def __init__(
        self, root: Path, name: str, net: Testnet, *, top_config: str = FAST_RETRY
    ) -> None:
        """``top_config``: config.toml's top-level keys (default: short retry
        delays; "" keeps the product's defaults, as churn measurements need)."""
        self.name = name
        self.home = root / name
        self.key = root / f"{name}.key"
        self.log = root / f"{name}-daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._scanned = 0
        self.cli("init", "--name", name, "--key-file", str(self.key))
        config = self.home / "config.toml"
        # Top-level keys first: after a table header every key belongs to that table.
        config.write_text(top_config + config.read_text() + net.config_toml())

    def __repr__(self) -> str:
        state = "stopped" if self.process is None else f"pid {self.process.pid}"
        return f"<Endpoint {self.name} {state}>"

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the command line ---------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        """The ``onionpost`` command line for this home."""
        return [sys.executable, "-m", "onionpost", "--home", str(self.home), *args]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``onionpost <args>``; with ``check``, a non-zero exit is an EndpointError."""
        try:
            result = subprocess.run(
                self.argv(*args),
                capture_output=True,
                text=True,
                env=dict(os.environ),
                timeout=CLI_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise EndpointError(f"{self.name}: onionpost {' '.join(args)} hung") from exc
        if check and result.returncode != 0:
            raise EndpointError(
                f"{self.name}: onionpost {' '.join(args)} exited with {result.returncode}: "
                f"{result.stderr.strip()}"
            )
        return result

    def json(self, *args: str) -> Any:
        """``onionpost <args> --json``, its output decoded."""
        return json.loads(self.cli(*args, "--json").stdout)

    def json_lines(self, *args: str) -> list[Any]:
        """``onionpost <args> --json`` for commands that print one JSON value a line."""
        out = self.cli(*args, "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def inbox(self) -> list[dict[str, Any]]:
        return self.json_lines("inbox")

    # -- the daemon -------------------------------------------------------------------

    def serve_args(self) -> list[str]:
        """What :meth:`launch` runs after ``onionpost --home <home>``."""
        return ["daemon", "--key-file", str(self.key)]

    def launch(self) -> None:
        """Start the daemon; :meth:`wait_ready` waits for it."""
        if self.process is not None:
            raise EndpointError(f"{self.name}: the daemon is running already")
        self._scanned = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(*self.serve_args()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
                start_new_session=True,
            )

    def wait_ready(self, deadline: float) -> None:
        """Until the daemon says it is ready; ``deadline`` is a time.monotonic() value."""
        process = self.process
        if process is None:
            raise EndpointError(f"{self.name}: no daemon was launched")
        # Bounded: one poll per _POLL_SECONDS until the deadline.
        while time.monotonic() < deadline:
            if self._ready_line_written():
                return
            if process.poll() is not None:
                self.process = None
                raise EndpointError(
                    f"{self.name}'s daemon exited with {process.returncode}:\n{self.log_tail()}"
                )
            time.sleep(_POLL_SECONDS)
        raise EndpointError(f"{self.name}'s daemon was not ready in time:\n{self.log_tail()}")

    def start(self, seconds: float = READY_SECONDS) -> None:
        """Start the daemon and wait until it is ready."""
        self.launch()
        self.wait_ready(time.monotonic() + seconds)

    def kill(self) -> None:
        """SIGKILL the daemon's process group (the daemon and its tor): a crash."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired as exc:
            raise EndpointError(f"{self.name}'s daemon survived SIGKILL") from exc
        self.process = None

    def stop(self) -> None:
        """Stop the daemon and its tor: SIGTERM, SIGKILL after STOP_SECONDS. Safe to repeat."""
        process = self.process
        if process is None:
            return
        survivors = stop_processes(
            {process.pid: lambda: process.poll() is None},
            term_grace=STOP_SECONDS,
            process_groups=True,
        )
        if survivors:
            raise EndpointError(f"{self.name}'s daemon survived SIGKILL")
        self.process = None

    def terminate(self) -> None:
        """SIGTERM to the daemon alone, as ``kill <pid>`` (or systemd's
        ``KillMode=mixed``) sends it: the daemon closes its sessions, so its
        contacts see them end at once, then stops its tor. :meth:`stop` signals
        the whole group, tor too, as Ctrl-C and ``KillMode=control-group`` do;
        then the sessions' Close may never leave, and a contact can hold a
        session to the stopped daemon open for seconds to minutes. What is
        left of the group after STOP_SECONDS is stopped as :meth:`stop` does."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_SECONDS)
        if process.poll() is not None:
            # Its tor exits with it; anything of the group still there is told to.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        self.stop()

    def log_tail(self) -> str:
        return "\n".join(tail_lines(self.log, _LOG_TAIL_LINES))

    def _ready_line_written(self) -> bool:
        # Only what this start wrote: a restart appends to the same log.
        try:
            with self.log.open("rb") as log:
                log.seek(self._scanned)
                written = log.read(_SCAN_BYTES)
        except OSError:
            return False
        return self.ready_line in written


def start_all(endpoints: Iterable[Endpoint], seconds: float = READY_SECONDS) -> None:
    """Start every endpoint's daemon at once; wait until all are ready (one deadline)."""
    started = list(endpoints)
    for endpoint in started:
        endpoint.launch()
    deadline = time.monotonic() + seconds
    for endpoint in started:
        endpoint.wait_ready(deadline)
