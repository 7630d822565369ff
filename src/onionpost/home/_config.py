"""Settings from ``home/config.toml``: every key optional, every default documented.

The file is TOML (read with :mod:`tomllib`). Top-level keys are named as the
fields of :class:`Config`; tor's settings live in a ``[tor]`` table, and
``[tor.options]`` passes extra lines to the tor we launch (a private test
network needs them). A home run as a mailbox (``onionpost mailbox serve``)
reads its bounds from a ``[mailbox]`` table (fields ``mailbox_<key>``)::

    onion_port = 7733
    max_file_size = 1073741824

    [tor]
    mode = "launch"

    [tor.options]
    TestingTorNetwork = "1"
    DirAuthority = ["auth0 ...", "auth1 ..."]

    [mailbox]
    retention = 604800.0

Unknown keys and values of the wrong type raise
:class:`~onionpost.errors.ConfigError` naming the key (``tor.mode``), so a
typo never silently falls back to a default. :data:`DEFAULT_CONFIG_TEXT`, the
file ``init`` writes, lists every key commented out at its default; a test
checks that it and :class:`Config` agree.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from onionpost._files import read_small_file
from onionpost.errors import ConfigError, LabelError
from onionpost.home._paths import Paths
from onionpost.limits import (
    MAX_CONFIG_FILE,
    MAX_LABEL_SCHEMES,
    MAX_REGISTRAR_REFRESH,
    MIN_REGISTRAR_REFRESH,
)
from onionpost.proto.labels import LabelPolicy, Scheme

__all__ = ["DEFAULT_CONFIG_TEXT", "Config", "load_config", "parse_config"]

GiB: Final = 2**30
MiB: Final = 2**20
# The largest envelope a mailbox can take: proto.envelope.MAX_ENVELOPE (home
# does not import the envelope code; a test keeps the two equal).
MAX_MAILBOX_ENVELOPE: Final = 64_000
TOR_MODES: Final = ("launch", "attach")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Config:
    tor_mode: str = "launch"
    tor_binary: Path = Path("/usr/bin/tor")
    tor_control_port: int | None = None
    tor_control_socket: Path | None = None
    tor_password: str | None = field(default=None, repr=False)
    tor_allow_unauthenticated_control: bool = False
    tor_extra_options: dict[str, str | list[str]] = field(default_factory=dict)
    onion_port: int = 7733
    max_file_size: int = 1 * GiB
    max_disk_use: int = 10 * GiB
    retry_initial: float = 5.0
    retry_max: float = 900.0
    connect_timeout: float = 60.0
    message_expiry: float | None = None
    max_unread_per_contact: int = 10_000
    max_transfers_per_contact: int = 4
    transfer_idle_timeout: float = 7 * 24 * 3600.0
    # Seconds a sent file's sealed copy is kept once it was delivered
    # (or refused, or expired); then it is deleted (the message stays).
    keep_sent_files: float = 0.0
    peer_records_per_second: int = 5000
    log_level: str = "info"
    # An endpoint with a mailbox (mailbox.md): how long a contact must have
    # been unreachable before what waits for it goes to the contact's mailbox.
    mailbox_after: float = 60.0
    # Agency trust (trust.md §7.4): sessions and deliveries only with contacts
    # whose agency endorsement is valid now.
    require_endorsement: bool = False
    # Seconds between fetches of our agency's list from its registrar (trust.md §8).
    trust_refresh: float = 900.0
    # Handling labels (spec.md §5.10): the [labels] table.
    labels: LabelPolicy = field(default_factory=LabelPolicy.build)
    # A home run as a mailbox: the [mailbox] table.
    mailbox_retention: float = 30 * 24 * 3600.0
    mailbox_max_envelope: int = MAX_MAILBOX_ENVELOPE
    mailbox_max_envelopes_per_contact: int = 5000
    mailbox_max_bytes_per_contact: int = 256 * MiB
    mailbox_max_disk_use: int = 10 * GiB
    mailbox_max_envelopes_per_owner: int = 20000
    mailbox_max_bytes_per_owner: int = 640 * MiB
    mailbox_max_contacts_per_owner: int = 200
    mailbox_records_per_second: int = 200
    # A home run as an agency's registrar: the [registrar] table (trust.md §8).
    registrar_refresh: float = 900.0
    registrar_endorsement_days: int = 7


DEFAULT_CONFIG_TEXT: Final = """\
# onionpost settings. Every key is optional; the values shown commented out
# are the defaults. Unknown keys and wrong types are refused at start-up.

# Virtual port of our onion service; contacts dial <our address>:<port>.
# onion_port = 7733

# Largest file accepted from a contact or queued to one, in bytes (1 GiB).
# max_file_size = 1073741824

# Total bytes of files (sent and received, encrypted) kept in files/ (10 GiB).
# max_disk_use = 10737418240

# Seconds to wait before redialling an unreachable contact; doubles on each
# failure (with jitter) up to retry_max; at most 30 s (or retry_initial) for
# 10 minutes after a session with the contact ended. A contact that comes
# back does not wait for it: its daemon dials us when it starts (spec.md
# §5.9), and we deliver at once.
# retry_initial = 5.0
# retry_max = 900.0

# Seconds allowed to reach a contact and complete the handshake.
# connect_timeout = 60.0

# Seconds after which an undelivered message expires and is no longer sent.
# Absent: messages never expire.
# message_expiry = 604800.0

# What one contact may make us hold. Texts from a contact beyond this many
# unread ones are refused until some are read (the contact keeps them queued
# and retries later).
# max_unread_per_contact = 10000

# Files one contact may be sending us at the same time; a further offer is
# deferred (the contact offers it again later).
# max_transfers_per_contact = 4

# Seconds after which a file that stopped arriving is dropped with what was
# received of it (7 days); the sender offers it again from the start.
# transfer_idle_timeout = 604800.0

# Seconds a file we sent is kept (encrypted, counted in max_disk_use) once
# the contact has it (or refused it, or it expired); then our copy is
# deleted, the message stays in the outbox's history. 0: at once.
# keep_sent_files = 0.0

# Records per second one contact may send us (with a burst of twice that);
# beyond it we stop reading and tor's flow control slows the contact down.
# peer_records_per_second = 5000

# One of "debug", "info", "warning", "error". Logs never contain message
# contents or keys.
# log_level = "info"

# With a mailbox (onionpost mailbox pair): seconds a contact must have been
# unreachable before what waits for it is sealed and left in the contact's
# own mailbox, if it has one, instead of waiting for the contact.
# mailbox_after = 60.0

# Agency trust: send nothing to a contact (its outbox waits, its sessions
# carry nothing) until it presents an endorsement of an agency whose anchor
# is installed, valid now (onionpost trust add; trust.md). A revoked contact
# is refused whatever this says.
# require_endorsement = false

# Enrolled with an agency's registrar (onionpost trust enrol): seconds between
# fetches of the agency's revocation list (and renewals of our endorsement
# when a third of its life is left), 60 to 3600.
# trust_refresh = 900.0

[tor]
# "launch": run our own tor with home/tor/ as its DataDirectory.
# "attach": use an already running tor through its control port or socket.
# mode = "launch"

# The tor executable used in "launch" mode.
# binary = "/usr/bin/tor"

# "attach" mode: the control port (on 127.0.0.1) or the control socket path;
# give one of them.
# control_port = 9051
# control_socket = "/run/tor/control"

# "attach" mode: the control port password, if tor uses HashedControlPassword
# (cookie authentication needs no setting).
# password = ""

# "attach" mode: a control port that asks for no authentication lets every
# local account control that tor (read our contacts' client keys, redirect
# our onion service). It is refused unless this is true.
# allow_unauthenticated_control = false

# Extra torrc lines for the tor we launch: each key is a tor option, its
# value a string, or a list of strings for an option given several times.
# Empty by default.
# [tor.options]
# TestingTorNetwork = "1"

# Handling labels (protocol-spec/spec.md §5.10). Every message and file
# carries one: --label on send, else the default. Schemes: TLP 2.0
# ("TLP:AMBER+STRICT"), US CUI banners ("CUI//SP-CTI//NOFORN"), and the
# agency schemes declared below ("ACME:SENSITIVE//LES").
# [labels]
# default = "TLP:AMBER"
# The highest label we accept, one per scheme; told to every contact, whose
# daemon then refuses to send us more. Empty: no limit.
# accept = []
# The highest label an evidence export carries, per scheme (TLP:RED never).
# export_max = ["TLP:AMBER+STRICT"]
# Our organisation, as endorsements name it: TLP:AMBER+STRICT is then sent
# on only to contacts endorsed as in it.
# organisation = "acme"
# An agency scheme: its levels lowest first, and its caveats.
# [[labels.schemes]]
# name = "ACME"
# levels = ["INTERNAL", "SENSITIVE"]
# caveats = ["LES"]

# Only for a home run as a mailbox (onionpost mailbox serve): what it holds
# for the endpoints that paired with it, and for how long. Uncomment the
# table's header with the keys you set.
# [mailbox]

# Seconds an envelope is held before it is deleted unread (30 days).
# retention = 2592000.0

# Largest envelope accepted, in bytes (at most 64000, the protocol's bound).
# max_envelope = 64000

# What one contact may leave for one owner: envelopes, and their bytes (256 MiB).
# max_envelopes_per_contact = 5000
# max_bytes_per_contact = 268435456

# What all the contacts of one owner may leave for it together: envelopes,
# and their bytes (640 MiB: 10 GiB shared by the 16 owners a mailbox serves at
# most), so that one owner's contacts cannot fill the disk of every owner.
# max_envelopes_per_owner = 20000
# max_bytes_per_owner = 671088640

# Contacts one owner may register (each is a tor client key; 256 in all).
# max_contacts_per_owner = 200

# Total bytes of envelopes held, for every owner together (10 GiB); past it a
# deposit is refused as "mailbox full" and the contact keeps its messages.
# max_disk_use = 10737418240

# Records per second one session may send (with a burst of twice that);
# beyond it the mailbox stops reading and tor's flow control slows the sender.
# records_per_second = 200

# Only for a home run as an agency's registrar (onionpost registrar serve,
# trust.md §8). Uncomment the table's header with the keys you set.
# [registrar]

# Seconds between the fresh revocation lists it signs (60 to 3600).
# refresh = 900.0

# Days an endorsement it signs lasts (1 to 30); renewed with a third left.
# endorsement_days = 7
"""


# -- validation -----------------------------------------------------------------------


def _int(key: str, value: object, low: int, high: int) -> int:
    if type(value) is not int:
        raise ConfigError(f"config key {key} must be an integer")
    if not low <= value <= high:
        raise ConfigError(f"config key {key} must be between {low} and {high}")
    return value


def _seconds(key: str, value: object) -> float:
    if type(value) not in (int, float):
        raise ConfigError(f"config key {key} must be a number of seconds")
    seconds = float(value)  # type: ignore[arg-type]
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"config key {key} must be a positive number of seconds")
    return seconds


def _seconds_or_zero(key: str, value: object) -> float:
    if value == 0 and type(value) in (int, float):
        return 0.0
    return _seconds(key, value)


def _choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"config key {key} must be one of {', '.join(choices)}")
    return value


def _path(key: str, value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key {key} must be a path (a string)")
    return Path(value).expanduser()


def _text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"config key {key} must be a string")
    return value


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"config key {key} must be true or false")
    return value


def _tor_options(key: str, value: object) -> dict[str, str | list[str]]:
    if not isinstance(value, dict):
        raise ConfigError(f"config key {key} must be a table")
    options: dict[str, str | list[str]] = {}
    for name, item in value.items():
        where = f"{key}.{name}"
        if name in _TOP or name in _TABLES or name == "labels":
            # A line appended after [tor.options] lands in it, not at the top.
            raise ConfigError(
                f"config key {where}: {name} is onionpost's own setting, not a tor option; "
                "put it above the first [table] of the file"
            )
        if isinstance(item, str):
            options[name] = item
        elif type(item) is int:
            options[name] = str(item)
        elif isinstance(item, list) and item and all(isinstance(v, str) for v in item):
            options[name] = list(item)
        else:
            raise ConfigError(f"config key {where} must be a string or a list of strings")
    return options


def _refresh(key: str, value: object) -> float:
    seconds = _seconds(key, value)
    if not MIN_REGISTRAR_REFRESH <= seconds <= MAX_REGISTRAR_REFRESH:
        raise ConfigError(
            f"config key {key} must be {MIN_REGISTRAR_REFRESH} to {MAX_REGISTRAR_REFRESH} seconds"
        )
    return seconds


_MAX_PORT: Final = 65535
_MAX_BYTES: Final = 2**62

# TOML key -> (Config field, converter). The one table of what the file may hold.
_TOP: Final[dict[str, tuple[str, Callable[[str, object], Any]]]] = {
    "onion_port": ("onion_port", lambda k, v: _int(k, v, 1, _MAX_PORT)),
    "max_file_size": ("max_file_size", lambda k, v: _int(k, v, 0, _MAX_BYTES)),
    "max_disk_use": ("max_disk_use", lambda k, v: _int(k, v, 0, _MAX_BYTES)),
    "retry_initial": ("retry_initial", _seconds),
    "retry_max": ("retry_max", _seconds),
    "connect_timeout": ("connect_timeout", _seconds),
    "message_expiry": ("message_expiry", _seconds),
    "max_unread_per_contact": ("max_unread_per_contact", lambda k, v: _int(k, v, 1, 10**9)),
    "max_transfers_per_contact": (
        "max_transfers_per_contact",
        lambda k, v: _int(k, v, 1, 1000),
    ),
    "transfer_idle_timeout": ("transfer_idle_timeout", _seconds),
    "keep_sent_files": ("keep_sent_files", _seconds_or_zero),
    "peer_records_per_second": ("peer_records_per_second", lambda k, v: _int(k, v, 1, 10**6)),
    "log_level": ("log_level", lambda k, v: _choice(k, v, LOG_LEVELS)),
    "mailbox_after": ("mailbox_after", _seconds),
    "require_endorsement": ("require_endorsement", _bool),
    "trust_refresh": ("trust_refresh", _refresh),
}
_TOR: Final[dict[str, tuple[str, Callable[[str, object], Any]]]] = {
    "mode": ("tor_mode", lambda k, v: _choice(k, v, TOR_MODES)),
    "binary": ("tor_binary", _path),
    "control_port": ("tor_control_port", lambda k, v: _int(k, v, 1, _MAX_PORT)),
    "control_socket": ("tor_control_socket", _path),
    "password": ("tor_password", _text),
    "allow_unauthenticated_control": ("tor_allow_unauthenticated_control", _bool),
    "options": ("tor_extra_options", _tor_options),
}


_MAILBOX: Final[dict[str, tuple[str, Callable[[str, object], Any]]]] = {
    "retention": ("mailbox_retention", _seconds),
    "max_envelope": (
        "mailbox_max_envelope",
        lambda k, v: _int(k, v, 1, MAX_MAILBOX_ENVELOPE),
    ),
    "max_envelopes_per_contact": (
        "mailbox_max_envelopes_per_contact",
        lambda k, v: _int(k, v, 1, 10**9),
    ),
    "max_bytes_per_contact": (
        "mailbox_max_bytes_per_contact",
        lambda k, v: _int(k, v, 1, _MAX_BYTES),
    ),
    "max_envelopes_per_owner": (
        "mailbox_max_envelopes_per_owner",
        lambda k, v: _int(k, v, 1, 10**9),
    ),
    "max_bytes_per_owner": (
        "mailbox_max_bytes_per_owner",
        lambda k, v: _int(k, v, 1, _MAX_BYTES),
    ),
    "max_contacts_per_owner": (
        "mailbox_max_contacts_per_owner",
        lambda k, v: _int(k, v, 1, 10**4),
    ),
    "max_disk_use": ("mailbox_max_disk_use", lambda k, v: _int(k, v, 0, _MAX_BYTES)),
    "records_per_second": ("mailbox_records_per_second", lambda k, v: _int(k, v, 1, 10**6)),
}
_REGISTRAR: Final[dict[str, tuple[str, Callable[[str, object], Any]]]] = {
    "refresh": ("registrar_refresh", _refresh),
    "endorsement_days": ("registrar_endorsement_days", lambda k, v: _int(k, v, 1, 30)),
}
_TABLES: Final = {"tor": _TOR, "mailbox": _MAILBOX, "registrar": _REGISTRAR}
_LABEL_KEYS: Final = frozenset({"default", "accept", "export_max", "organisation", "schemes"})
_SCHEME_KEYS: Final = frozenset({"name", "levels", "caveats"})


def _strings(key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key {key} must be a list of strings")
    return list(value)


def _scheme(key: str, value: object) -> Scheme:
    if not isinstance(value, dict) or not set(value) <= _SCHEME_KEYS or "name" not in value:
        raise ConfigError(f"config key {key} must be a table of name, levels and caveats")
    return Scheme(
        _text(f"{key}.name", value["name"]),
        tuple(_strings(f"{key}.levels", value.get("levels", []))),
        frozenset(_strings(f"{key}.caveats", value.get("caveats", []))),
    )


def _labels(value: object) -> LabelPolicy:
    """The [labels] table: every label checked against the schemes it declares."""
    if not isinstance(value, dict):
        raise ConfigError("config key labels must be a table")
    for key in value:
        if key not in _LABEL_KEYS:
            raise ConfigError(f"unknown config key labels.{key}")
    schemes = value.get("schemes", [])
    if not isinstance(schemes, list) or len(schemes) > MAX_LABEL_SCHEMES:
        raise ConfigError(f"config key labels.schemes: at most {MAX_LABEL_SCHEMES} tables")
    try:
        return LabelPolicy.build(
            default=_text("labels.default", value.get("default", "TLP:AMBER")),
            accept=_strings("labels.accept", value.get("accept", [])),
            export_max=_strings("labels.export_max", value.get("export_max", ["TLP:AMBER+STRICT"])),
            schemes=[_scheme(f"labels.schemes[{n}]", s) for n, s in enumerate(schemes)],
            organisation=(
                _text("labels.organisation", value["organisation"])
                if "organisation" in value
                else None
            ),
        )
    except LabelError as exc:
        raise ConfigError(f"config table labels: {exc}") from exc


def parse_config(text: str, *, source: str = "config.toml") -> Config:
    """A :class:`Config` from TOML text; :class:`ConfigError` naming the bad key."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in document.items():
        table = _TABLES.get(key)
        if table is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key} must be a table")
            for sub_key, sub_value in value.items():
                if sub_key not in table:
                    raise ConfigError(f"unknown config key {key}.{sub_key}")
                name, convert = table[sub_key]
                values[name] = convert(f"{key}.{sub_key}", sub_value)
        elif key == "labels":
            values["labels"] = _labels(value)
        elif key in _TOP:
            name, convert = _TOP[key]
            values[name] = convert(key, value)
        else:
            raise ConfigError(f"unknown config key {key}")
    config = Config(**values)
    if config.retry_max < config.retry_initial:
        raise ConfigError("config key retry_max must not be less than retry_initial")
    if config.tor_mode == "attach" and (config.tor_control_port is None) == (
        config.tor_control_socket is None
    ):
        raise ConfigError(
            "config key tor.mode = attach needs exactly one of tor.control_port "
            "and tor.control_socket"
        )
    return config


def load_config(paths: Paths) -> Config:
    """``home/config.toml``, or every default when the file does not exist."""
    data = read_small_file(paths.config, MAX_CONFIG_FILE, what="config file", missing_ok=True)
    if data is None:
        return Config()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {paths.config}: not UTF-8 ({exc})") from exc
    return parse_config(text, source=str(paths.config))
