"""``onionpost daemon`` (foreground) and ``onionpost doctor``."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import trio

from onionpost import api
from onionpost._logs import safe
from onionpost.cli._common import (
    emit_json,
    format_ms,
    home_option,
    json_option,
    resolve_home,
    run_client,
    run_until_signal,
    secret_source,
    serve_options,
)
from onionpost.errors import (
    ConfigError,
    OnionpostError,
    SelfTestError,
    StoreError,
    StoreLockedError,
)

if TYPE_CHECKING:
    from onionpost.daemon import Daemon
    from onionpost.home import Config, Paths
    from onionpost.tor import TcpListener

EXIT_FAILED = 1
EXIT_ENVIRONMENT = 3
# doctor's questions to a running tor must be answered within this.
DOCTOR_TOR_SECONDS = 10.0

log = logging.getLogger("onionpost.daemon")


def _fail(message: str, code: int) -> None:
    click.echo(f"onionpost: {message}", err=True)
    raise SystemExit(code)


@click.command("daemon")
@serve_options
def daemon(home: Path | None, key_file: Path | None, passphrase_file: Path | None) -> None:
    """Run the endpoint in the foreground until SIGINT or SIGTERM."""
    from onionpost.daemon import Daemon
    from onionpost.home import Paths
    from onionpost.host import check_primitives, open_home
    from onionpost.store import Store

    try:
        check_primitives()
    except SelfTestError as exc:
        _fail(str(exc), EXIT_ENVIRONMENT)
    paths = Paths.for_home(resolve_home(home))
    if paths.mailbox_store.exists():
        # Run as an endpoint, it would publish the mailbox's address with no
        # owner let in: the owners' mailbox silently gone.
        raise ConfigError(
            f"{paths.home} is a mailbox's home (it holds {paths.mailbox_store.name}): "
            "run it with 'onionpost mailbox serve', or give an endpoint's home"
        )
    for problem in paths.permission_problems():
        log.warning("event=home_permissions problem=%s", safe(problem))
    # Errors take the path of every other command (OnionpostGroup): one line,
    # and the exit code by kind (tor, the store: 3).
    source = partial(secret_source, key_file, passphrase_file)
    with open_home(paths, source, what="endpoint", log=log) as (secrets, config):
        store = Store.open(paths.store, paths.files, secrets.store_key)
        try:
            trio.run(_run, Daemon(paths, secrets, config, store))
        finally:
            store.close()


async def _run(daemon: Daemon) -> None:
    await run_until_signal(daemon.run, "daemon", log)
    daemon.close()


def check_home_sockets(paths: Paths) -> None:
    """ConfigError for a home whose socket paths tor cannot take (it takes
    them unquoted: no space, comma or quote) or that are too long for a Unix
    socket: ``init`` refuses such a home rather than the daemon failing later."""
    from onionpost.tor import CONTROL_SOCKET, SOCKS_SOCKET, check_unix_path

    check_unix_path(paths.onion_socket, "the onion service's socket")
    check_unix_path(paths.tor / SOCKS_SOCKET, "tor's SOCKS socket")
    check_unix_path(paths.tor / CONTROL_SOCKET, "tor's control socket")


@dataclass(frozen=True)
class Verdict:
    """One line of ``onionpost doctor``: a check, its verdict, what was seen."""

    check: str
    verdict: str  # "ok", "problem" or "info"
    detail: str

    def record(self) -> dict[str, str]:
        return {"check": self.check, "verdict": self.verdict, "detail": self.detail}


def hardening_verdicts(
    version: str, vanguards_setting: str, consensus_vanguards: str | None, launched: bool
) -> list[Verdict]:
    """The hardening profile's verdicts (spec §1.3) from what tor reports.

    ``vanguards_setting`` is GETCONF VanguardsLiteEnabled, ``consensus_vanguards``
    the consensus parameter vanguards-lite-enabled (None when absent).
    """
    from onionpost.tor import MAX_STREAMS_PER_CIRCUIT, tor_has_pow, vanguards_lite_on

    verdicts = [Verdict("tor version", "info", version or "unknown")]
    setting = vanguards_setting or "auto"
    on = vanguards_lite_on(setting, consensus_vanguards)
    detail = f"VanguardsLiteEnabled {setting}" + (
        f" (consensus vanguards-lite-enabled={consensus_vanguards or 'absent'})"
        if setting == "auto"
        else ""
    )
    verdicts.append(Verdict("vanguards-lite", "ok" if on else "problem", detail))
    if tor_has_pow(version):
        verdicts.append(
            Verdict("proof-of-work defenses", "ok", "PoWDefensesEnabled=1 on ADD_ONION")
        )
    else:
        verdicts.append(
            Verdict("proof-of-work defenses", "problem", "this tor is older than 0.4.8: none")
        )
    verdicts.append(
        Verdict(
            "streams per circuit",
            "ok",
            f"MaxStreams={MAX_STREAMS_PER_CIRCUIT}, MaxStreamsCloseCircuit on ADD_ONION",
        )
    )
    verdicts.append(
        Verdict(
            "intro-point DoS defense",
            "info",
            "not settable for an ADD_ONION service (torrc-only); intro points apply "
            "the consensus defaults",
        )
    )
    if not launched:
        verdicts.append(
            Verdict("tor's own listeners", "info", "attached tor: its torrc is not ours to check")
        )
    return verdicts


def listener_verdicts(listeners: list[TcpListener], pids: dict[str, int | None]) -> list[Verdict]:
    """No TCP listener in the daemon or its tor (spec §1.2); one problem per listener."""
    seen = {name: pid for name, pid in pids.items() if pid is not None}
    if not seen:
        return [Verdict("listening sockets", "info", "the daemon is not running")]
    if not listeners:
        names = ", ".join(f"{name} (pid {pid})" for name, pid in sorted(seen.items()))
        return [Verdict("listening sockets", "ok", f"no TCP listener in {names}")]
    return [
        Verdict("listening sockets", "problem", f"TCP listener {listener}")
        for listener in listeners
    ]


def mailbox_verdicts(report: api.MailboxStatus) -> list[Verdict]:
    """An endpoint's mailbox, as its running daemon reports it (mailbox.md §11)."""
    if report.role is not api.Role.OWNER:
        return [Verdict("mailbox", "info", f"this daemon serves {len(report.owners)} owners")]
    if not report.paired:
        return [Verdict("mailbox", "info", report.warning or "no mailbox paired")]
    seen = "reachable" if report.reachable else f"not reachable ({report.last_error or 'down'})"
    prekeys = (
        "prekeys left unknown"
        if report.one_time_prekeys is None
        else f"{report.one_time_prekeys} one-time prekeys left"
    )
    detail = (
        f"{report.mailbox}: {seen}, {prekeys}, last drained {format_ms(report.last_drained_ms)}"
    )
    if report.warning:
        detail += f"; {report.warning}"
    bad = not report.reachable or report.one_time_prekeys == 0
    return [Verdict("mailbox", "problem" if bad else "ok", detail)]


def _ask_mailbox(home: Path) -> list[Verdict]:
    try:
        report = run_client(home, lambda client: client.mailbox_status())
    except OnionpostError as exc:
        return [Verdict("mailbox", "problem", f"cannot ask the daemon: {exc}")]
    return mailbox_verdicts(report)


def _check_databases(paths: Paths, store_key: bytes, verdicts: list[Verdict]) -> None:
    """The integrity of the home's databases: a mailbox's ``mailbox.db`` when
    the home runs one, the endpoint's store otherwise (or as well, when both
    are there). Neither is made when absent but the endpoint's."""
    from onionpost.store import MailboxStore, Store

    mailbox = paths.mailbox_store.exists()
    checks: list[tuple[str, Callable[[], Any]]] = []
    if mailbox:
        checks.append(
            ("mailbox database", lambda: MailboxStore.open(paths.mailbox_store, store_key))
        )
    if paths.store.exists() or not mailbox:
        checks.append(("store integrity", lambda: Store.open(paths.store, paths.files, store_key)))
    for check, opener in checks:
        try:
            store = opener()
            try:
                issues = store.integrity_check()
            finally:
                store.close()
        except StoreError as exc:
            verdicts.append(Verdict(check, "problem", str(exc)))
            continue
        verdicts.extend(Verdict(check, "problem", issue) for issue in issues)
        if not issues:
            verdicts.append(Verdict(check, "ok", ""))


def _pid_file(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and Path(f"/proc/{text}").exists() else None


def _binary_version(tor_binary: Path) -> str:
    """The version ``tor --version`` prints ("Tor version 0.4.9.11."), or ""."""
    try:
        result = subprocess.run(
            [str(tor_binary), "--version"],
            capture_output=True,
            text=True,
            timeout=DOCTOR_TOR_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"Tor version (\d+(?:\.\d+)+(?:-[\w.]+)?)", result.stdout)
    return match.group(1) if match else ""


def _tor_checks(paths: Paths, config: Config, daemon_running: bool) -> list[Verdict]:
    """Ask the running tor (through its control socket, with the cookie) and /proc."""
    from onionpost.errors import TorError
    from onionpost.tor import ControlProbe, consensus_param, tcp_listeners

    launched = config.tor_mode == "launch"
    target: int | Path | None
    if launched:
        target = paths.tor / "control.sock" if daemon_running else None
    else:
        target = config.tor_control_socket or config.tor_control_port
    verdicts: list[Verdict] = []
    tor_pid: int | None = None
    if target is None:
        verdicts.append(Verdict("tor", "info", "the daemon is not running: tor not asked"))
        version = _binary_version(config.tor_binary)
        if version:
            verdicts.extend(
                v
                for v in hardening_verdicts(version, "1", None, launched)
                if v.check in ("tor version", "proof-of-work defenses")
            )
    else:
        try:
            with ControlProbe(
                target,
                deadline=time.monotonic() + DOCTOR_TOR_SECONDS,
                password=None if launched else config.tor_password,
            ) as probe:
                version = probe.get_info("version").strip()
                setting = probe.get_conf("VanguardsLiteEnabled").strip()
                param = None
                if setting in ("", "auto"):
                    for key in (
                        "dir/status-vote/current/consensus-microdesc",
                        "dir/status-vote/current/consensus",
                    ):
                        try:
                            param = consensus_param(probe.get_info(key), "vanguards-lite-enabled")
                            break
                        except TorError:
                            continue
                with contextlib.suppress(TorError, ValueError):
                    tor_pid = int(probe.get_info("process/pid"))
            verdicts.extend(hardening_verdicts(version, setting, param, launched))
        except TorError as exc:
            verdicts.append(Verdict("tor", "problem", f"cannot ask tor: {exc}"))
    if not launched:
        tor_pid = None  # not ours: its listeners are its operator's business
    daemon_pid = _pid_file(paths.lock) if daemon_running else None
    pids = {"daemon": daemon_pid, "tor": tor_pid}
    found = tcp_listeners(pid for pid in pids.values() if pid is not None)
    verdicts.extend(listener_verdicts(list(found), pids))
    return verdicts


@click.command("doctor")
@home_option
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    envvar="ONIONPOST_KEY_FILE",
    help="Unlock the home with this key file, to check its store (else $ONIONPOST_KEY_FILE).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path),
    help="Unlock the home with this file's first line as passphrase, to check its store.",
)
@json_option
def doctor(
    home: Path | None, key_file: Path | None, passphrase_file: Path | None, as_json: bool
) -> None:
    """Check tor and its hardening, listening sockets, permissions, the store
    (a mailbox's database on a mailbox home) and, while the daemon runs, the
    endpoint's mailbox. Without a passphrase (or key file) the secrets and
    the store are not checked, and said so; the rest is."""
    from onionpost.home import Paths, load_config, unlock
    from onionpost.host import home_lock

    paths = Paths.for_home(resolve_home(home))
    verdicts: list[Verdict] = []

    def ok(check: str, detail: str = "") -> None:
        verdicts.append(Verdict(check, "ok", detail))

    def problem(check: str, detail: str) -> None:
        verdicts.append(Verdict(check, "problem", detail))

    try:
        config = load_config(paths)
        tor = config.tor_binary
        if not (tor.is_file() and os.access(tor, os.X_OK)):
            problem("tor binary", f"{tor} is missing: apt-get install -y tor")
        else:
            ok("tor binary", str(tor))
        loose = paths.permission_problems()
        for detail in loose:
            problem("permissions", detail)
        if not loose:
            ok("permissions")
        try:
            source = secret_source(key_file, passphrase_file)
        except ConfigError as exc:
            # Only the secrets and the store need it: the rest is checked.
            source = None
            verdicts.append(Verdict("secrets unlock", "info", f"not checked: {exc}"))
        secrets = None
        if source is not None:
            secrets = unlock(paths, passphrase=source.passphrase, key_file=source.key_file)
            ok("secrets unlock")
        daemon_running = False
        check = "mailbox database" if paths.mailbox_store.exists() else "store integrity"
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(home_lock(paths.lock))
            except StoreLockedError:
                daemon_running = True
                verdicts.append(Verdict(check, "info", "in use by the running daemon: not checked"))
            else:
                if secrets is None:
                    verdicts.append(Verdict(check, "info", "not checked without the passphrase"))
                else:
                    _check_databases(paths, secrets.store_key, verdicts)
        if daemon_running:
            verdicts.extend(_ask_mailbox(paths.home))
        verdicts.extend(_tor_checks(paths, config, daemon_running))
    except OnionpostError as exc:
        problem("doctor", str(exc))
    failed = any(v.verdict == "problem" for v in verdicts)
    if as_json:
        emit_json({"ok": not failed, "checks": [v.record() for v in verdicts]})
    else:
        for v in sorted(verdicts, key=lambda v: v.verdict == "problem"):
            label = {"ok": "ok", "info": "info", "problem": "PROBLEM"}[v.verdict]
            click.echo(f"{label:<8} {v.check}" + (f": {v.detail}" if v.detail else ""))
    raise SystemExit(EXIT_FAILED if failed else 0)
