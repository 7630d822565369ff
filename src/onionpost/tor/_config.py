"""Configuration of the tor adapter, and what launch mode writes and reads on disk.

Theory of operation
-------------------
:class:`TorConfig` picks the mode: *launch* (``data_dir``: our own tor, whose
whole torrc :func:`launch_options` writes) or *attach* (``control_port`` or
``control_socket`` of a running tor). It is checked when it is made, so a bad
configuration fails before any process starts.

A tor we launch listens on no TCP port at all (spec §1.2): its SOCKS and
control ports are Unix sockets in its DataDirectory, which tor and we keep
0700, so another local account can neither borrow our client-authorization
keys through SOCKS nor talk to the control port. The torrc line quotes the
path with C escapes (tor-manual ``SocksPort``: "you may quote the path using
standard C escape sequences")::

    SocksPort unix:"/home/u/.local/share/onionpost/tor/socks.sock" ExtendedErrors
    ControlPort unix:"/home/u/.local/share/onionpost/tor/control.sock"

A Unix socket path is at most :data:`MAX_UNIX_PATH` bytes (``sun_path``);
a longer DataDirectory is refused before tor starts.

The launched tor also gets the hardening profile of a high-risk onion
service (spec §1.3): :data:`HARDENING_OPTIONS`.

The filesystem helpers are synchronous; the adapter runs them in a worker
thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from onionpost.errors import ConfigError, TorLaunchError

__all__ = [
    "CONTROL_SOCKET",
    "HARDENING_OPTIONS",
    "MAX_UNIX_PATH",
    "NOTICE_LOG",
    "SOCKS_SOCKET",
    "TorConfig",
    "check_binary",
    "check_unix_path",
    "launch_options",
    "prepare_data_dir",
    "torrc_unix_path",
    "vanguards_lite_on",
]

LOOPBACK: Final = "127.0.0.1"
NOTICE_LOG: Final = "notice.log"
#: The launched tor's SOCKS and control sockets, in its DataDirectory.
SOCKS_SOCKET: Final = "socks.sock"
CONTROL_SOCKET: Final = "control.sock"
#: The longest Unix socket path, in bytes: Linux's ``sun_path`` is 108 with its NUL.
MAX_UNIX_PATH: Final = 107

#: torrc of every tor we launch, beyond its ports (spec §1.3). Vanguards-lite
#: (prop 333) is tor's default ("auto" follows the consensus parameter
#: vanguards-lite-enabled, on when it is absent); we pin it on, so a consensus
#: cannot turn it off for us. The per-service defenses (proof of work,
#: MaxStreams) travel in ADD_ONION (:mod:`._publish`).
HARDENING_OPTIONS: Final[Mapping[str, str]] = {"VanguardsLiteEnabled": "1"}

# torrc options open_tor sets itself in launch mode; extra_options may not.
_RESERVED_OPTIONS: Final = frozenset(
    name.lower()
    for name in (
        "DataDirectory",
        "ControlPort",
        "ControlPortWriteToFile",
        "ControlSocket",
        "SocksPort",
        "CookieAuthentication",
        "CookieAuthFile",
        "HashedControlPassword",
        "PidFile",
        "Log",
        "__OwningControllerProcess",
    )
)


@dataclass(frozen=True)
class TorConfig:
    """How to get a tor: launch our own (``data_dir``) or attach to one.

    Exactly one of ``data_dir``, ``control_port`` and ``control_socket``.
    """

    tor_binary: Path = Path("/usr/bin/tor")  # absolute, never a PATH search
    data_dir: Path | None = None  # launch mode: our own tor's DataDirectory (0700)
    control_port: int | None = None  # attach mode: an existing tor's control port on 127.0.0.1
    control_socket: Path | None = None  # ... or its Unix control socket
    password: str | None = field(default=None, repr=False)  # attach: password auth, else cookie
    # attach: accept a control port that asks for no authentication (any local
    # account can then control that tor); refused unless this says so.
    allow_unauthenticated: bool = False
    extra_options: Mapping[str, str | Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        modes = [self.data_dir, self.control_port, self.control_socket]
        if sum(m is not None for m in modes) != 1:
            raise ConfigError("give exactly one of data_dir, control_port, control_socket")
        if not self.tor_binary.is_absolute():
            raise ConfigError("tor_binary must be an absolute path")
        if self.control_port is not None and not 0 < self.control_port < 65536:
            raise ConfigError("control_port must be 1 to 65535")
        if self.data_dir is None:
            if self.extra_options:
                raise ConfigError("extra_options apply only when we launch tor (data_dir)")
        else:
            if self.password is not None:
                raise ConfigError("password applies only when attaching to a running tor")
            if self.allow_unauthenticated:
                raise ConfigError("allow_unauthenticated applies only when attaching")
            for name, value in self.extra_options.items():
                if name.lower() in _RESERVED_OPTIONS:
                    raise ConfigError(
                        f"the tor option {name} is set by onionpost itself when it launches "
                        "tor ([tor.options] may not set it)"
                    )
                values = [value] if isinstance(value, str) else list(value)
                if any("\n" in v or "\r" in v for v in values) or "\n" in name:
                    raise ConfigError(f"torrc option {name} contains a line break")
                if name.lower() == "runasdaemon" and values != ["0"]:
                    raise ConfigError("RunAsDaemon must stay 0: we supervise tor ourselves")

    @property
    def launches(self) -> bool:
        return self.data_dir is not None


def torrc_unix_path(path: Path) -> str:
    """``unix:"<path>"`` for a torrc port line, the path in C escapes."""
    escaped = str(path).replace("\\", "\\\\").replace('"', '\\"')
    return f'unix:"{escaped}"'


def check_unix_path(path: Path, what: str) -> Path:
    """``path`` if it can name a Unix socket: absolute, and short enough."""
    if not path.is_absolute():
        raise ConfigError(f"{what} {path} must be an absolute path")
    if any(ord(c) < 0x20 or c.isspace() or c in '",' for c in str(path)):
        # ADD_ONION takes the path unquoted in a space-separated line.
        raise ConfigError(
            f"{what} {str(path)!r} has a space, a comma, a quote or a control character: "
            "choose a home directory without them"
        )
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH:
        raise ConfigError(
            f"{what} {path} is {size} bytes, longer than a Unix socket path may be "
            f"({MAX_UNIX_PATH}): use a shorter home directory"
        )
    return path


def launch_options(config: TorConfig, data_dir: Path) -> dict[str, str | Sequence[str]]:
    """The whole torrc of a tor we launch: ours, then the caller's ``extra_options``."""
    socks = check_unix_path(data_dir / SOCKS_SOCKET, "tor's SOCKS socket")
    control = check_unix_path(data_dir / CONTROL_SOCKET, "tor's control socket")
    options: dict[str, str | Sequence[str]] = {
        "DataDirectory": str(data_dir),
        # Unix sockets only (spec §1.2); tor refuses to create them unless
        # their directory is private (0700), which our DataDirectory is.
        "ControlPort": torrc_unix_path(control),
        # ExtendedErrors: onion failures get their own SOCKS codes (prop 304).
        "SocksPort": f"{torrc_unix_path(socks)} ExtendedErrors",
        "CookieAuthentication": "1",
        "PidFile": str(data_dir / "tor.pid"),
        "Log": [f"notice file {data_dir / NOTICE_LOG}"],
        "ClientOnly": "1",
        "RunAsDaemon": "0",
        **HARDENING_OPTIONS,
    }
    options.update(config.extra_options)
    return options


def vanguards_lite_on(setting: str, consensus_param: str | None) -> bool:
    """What VanguardsLiteEnabled resolves to (tor-manual): "1" or "0" as set;
    "auto" follows the consensus parameter vanguards-lite-enabled, on when absent."""
    if setting in ("0", "1"):
        return setting == "1"
    return consensus_param != "0"


def prepare_data_dir(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # tor refuses a DataDirectory that others can read (TOR-TESTNET.md).
    os.chmod(data_dir, 0o700)
    # Sockets of an earlier tor that did not remove them (killed).
    for name in (SOCKS_SOCKET, CONTROL_SOCKET, "control-port"):
        (data_dir / name).unlink(missing_ok=True)


def check_binary(tor_binary: Path) -> None:
    if not tor_binary.exists():
        raise TorLaunchError(f"tor binary {tor_binary} does not exist")
    if not tor_binary.is_file() or not os.access(tor_binary, os.X_OK):
        raise TorLaunchError(f"tor binary {tor_binary} is not an executable file")
