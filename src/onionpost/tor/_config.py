"""Configuration of the tor adapter, and what launch mode writes and reads on disk.

Theory of operation
-------------------
:class:`TorConfig` picks the mode: *launch* (``data_dir``: our own tor, whose
whole torrc :func:`launch_options` writes) or *attach* (``control_port`` or
``control_socket`` of a running tor). It is checked when it is made, so a bad
configuration fails before any process starts. Launch mode lets tor choose
free ports on 127.0.0.1 (``auto``) and learns the control port from the file
``ControlPortWriteToFile`` names, which holds one line::

    PORT=127.0.0.1:40425

The filesystem helpers are synchronous; the adapter runs them in a worker
thread.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from onionpost.errors import ConfigError, TorLaunchError

__all__ = [
    "CONTROL_PORT_FILE",
    "NOTICE_LOG",
    "TorConfig",
    "check_binary",
    "launch_options",
    "prepare_data_dir",
    "read_control_port",
]

LOOPBACK: Final = "127.0.0.1"
CONTROL_PORT_FILE: Final = "control-port"
NOTICE_LOG: Final = "notice.log"

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
            for name, value in self.extra_options.items():
                if name.lower() in _RESERVED_OPTIONS:
                    raise ConfigError(f"extra_options may not set {name}: open_tor sets it")
                values = [value] if isinstance(value, str) else list(value)
                if any("\n" in v or "\r" in v for v in values) or "\n" in name:
                    raise ConfigError(f"torrc option {name} contains a line break")
                if name.lower() == "runasdaemon" and values != ["0"]:
                    raise ConfigError("RunAsDaemon must stay 0: we supervise tor ourselves")

    @property
    def launches(self) -> bool:
        return self.data_dir is not None


def launch_options(config: TorConfig, data_dir: Path) -> dict[str, str | Sequence[str]]:
    """The whole torrc of a tor we launch: ours, then the caller's ``extra_options``."""
    options: dict[str, str | Sequence[str]] = {
        "DataDirectory": str(data_dir),
        "ControlPort": f"{LOOPBACK}:auto",
        "ControlPortWriteToFile": str(data_dir / CONTROL_PORT_FILE),
        # ExtendedErrors: onion failures get their own SOCKS codes (prop 304).
        "SocksPort": f"{LOOPBACK}:auto ExtendedErrors",
        "CookieAuthentication": "1",
        "PidFile": str(data_dir / "tor.pid"),
        "Log": [f"notice file {data_dir / NOTICE_LOG}"],
        "ClientOnly": "1",
        "RunAsDaemon": "0",
    }
    options.update(config.extra_options)
    return options


def prepare_data_dir(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # tor refuses a DataDirectory that others can read (TOR-TESTNET.md).
    os.chmod(data_dir, 0o700)
    (data_dir / CONTROL_PORT_FILE).unlink(missing_ok=True)


def read_control_port(data_dir: Path) -> int:
    # ControlPortWriteToFile writes "PORT=127.0.0.1:40425".
    text = (data_dir / CONTROL_PORT_FILE).read_text(encoding="ascii", errors="replace")
    match = re.search(r"PORT=127\.0\.0\.1:(\d{1,5})", text)
    if match is None:
        raise TorLaunchError("tor did not report a control port on 127.0.0.1")
    return int(match.group(1))


def check_binary(tor_binary: Path) -> None:
    if not tor_binary.exists():
        raise TorLaunchError(f"tor binary {tor_binary} does not exist")
    if not tor_binary.is_file() or not os.access(tor_binary, os.X_OK):
        raise TorLaunchError(f"tor binary {tor_binary} is not an executable file")
