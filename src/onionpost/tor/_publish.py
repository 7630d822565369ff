"""Publishing one onion service: its ADD_ONION command and its descriptor uploads.

Theory of operation
-------------------
A :class:`ServiceRecord` is what the adapter keeps to (re)publish a service:
the identity seed (secret, never in ``repr``), the port mapping and the
authorized client keys. Its :meth:`~ServiceRecord.add_onion_command` is the
control-port command (control-spec §3.27)::

    ADD_ONION ED25519-V3:<base64 of the 64-byte expanded key>
      Flags=V3Auth,MaxStreamsCloseCircuit MaxStreams=8 PoWDefensesEnabled=1
      Port=443,unix:/home/u/.local/share/onionpost/run/onion.sock
      ClientAuthV3=<52 base32 chars> ...

The target is a Unix socket (the daemon's) or a TCP port on loopback (tests).
``MaxStreams`` with ``MaxStreamsCloseCircuit`` and ``PoWDefensesEnabled``
are the per-service part of the hardening profile (spec §1.3); the latter
only where tor has the ``pow`` module (0.4.8 and later).

An :class:`UploadRound` follows the descriptor uploads tor reports for the
service (control-spec §4.1.25)::

    650 HS_DESC UPLOAD <id> UNKNOWN $A1B2...~relay1 <descriptor id> HSDIR_INDEX=...
    650 HS_DESC UPLOADED <id> UNKNOWN $A1B2...~relay1
    650 HS_DESC FAILED <id> UNKNOWN $A1B2...~relay1 REASON=UPLOAD_REJECTED

A round has *settled* when at least one upload succeeded, none is pending and
nothing happened for :data:`UPLOAD_QUIET_SECONDS`, or
:data:`UPLOAD_STRAGGLER_SECONDS` after the first success. Pure logic on the
times it is given; no clock, no I/O.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from onionpost.errors import ConfigError
from onionpost.proto.address import OnionAddress, expanded_secret_key
from onionpost.proto.noise import KeyPair
from onionpost.tor._config import check_unix_path
from onionpost.tor._controller import HsDescEvent

__all__ = [
    "MAX_AUTHORIZED_CLIENTS",
    "MAX_STREAMS_PER_CIRCUIT",
    "POW_MIN_VERSION",
    "Target",
    "UPLOAD_QUIET_SECONDS",
    "UPLOAD_STRAGGLER_SECONDS",
    "INTRO_LOST_SECONDS",
    "DescriptorState",
    "ServiceRecord",
    "UploadRound",
    "check_target",
    "tor_has_pow",
    "check_port",
    "check_x25519",
]

#: A descriptor round counts as settled after this long without HS_DESC news.
UPLOAD_QUIET_SECONDS: Final = 0.5
#: After the first successful upload, stop waiting for stragglers after this.
UPLOAD_STRAGGLER_SECONDS: Final = 10.0
#: A published service with no established introduction circuit for this long,
#: while tor otherwise works, is published afresh; the wait doubles with each
#: such republish in a row, INTRO_LOST_DOUBLINGS times at most.
INTRO_LOST_SECONDS: Final = 45.0
INTRO_LOST_DOUBLINGS: Final = 4
#: Client-authorization keys per service (each is a line in the descriptor).
MAX_AUTHORIZED_CLIENTS: Final = 256
X25519_KEY_LEN: Final = 32
#: Streams one rendezvous circuit may hold open at once; one more closes the
#: circuit (tor-manual HiddenServiceMaxStreams, MaxStreamsCloseCircuit). A
#: contact needs one stream per session, two while a session is replaced.
MAX_STREAMS_PER_CIRCUIT: Final = 8
#: The first tor whose ADD_ONION takes PoWDefensesEnabled (prop 327).
POW_MIN_VERSION: Final = (0, 4, 8, 1)

#: Where tor forwards the service's streams: a Unix socket, or (host, port) on loopback.
Target = tuple[str, int] | Path


class DescriptorState(enum.Enum):
    PUBLISHING = "publishing"  # no upload confirmed in this round yet
    PUBLISHED = "published"  # at least one HSDir accepted the descriptor
    FAILED = "failed"  # every upload of the round failed


@dataclass
class UploadRound:
    """Descriptor uploads of one service in the current round (HS_DESC events)."""

    pending: Counter[str] = field(default_factory=Counter)
    uploaded: int = 0
    failed: int = 0
    #: Failures an HSDir gave as UPLOAD_REJECTED (it holds a newer or equal revision).
    rejected: int = 0
    first_success: float | None = None
    last_change: float = 0.0

    def reset(self, now: float) -> None:
        self.pending.clear()
        self.uploaded = 0
        self.failed = 0
        self.rejected = 0
        self.first_success = None
        self.last_change = now

    def update(self, event: HsDescEvent, now: float) -> None:
        # Tor re-uploads at every time period and when the HSDir set changes:
        # an UPLOAD after a settled round starts a new round.
        if (
            event.action == "UPLOAD"
            and not self.pending
            and (self.uploaded or self.failed)
            and now - self.last_change > UPLOAD_QUIET_SECONDS
        ):
            self.reset(now)
        if event.action == "UPLOAD":
            self.pending[event.directory] += 1
        elif event.action in ("UPLOADED", "FAILED"):
            # Only outcomes of uploads that started in this round count: a late
            # answer about the descriptor before a DEL_ONION must not settle it.
            if self.pending[event.directory] <= 0:  # (a Counter lookup adds no key)
                return
            self.pending[event.directory] -= 1
            if self.pending[event.directory] == 0:
                del self.pending[event.directory]
            if event.action == "UPLOADED":
                self.uploaded += 1
                if self.first_success is None:
                    self.first_success = now
            else:
                self.failed += 1
                if event.reason == "UPLOAD_REJECTED":
                    self.rejected += 1
        else:
            return
        self.last_change = now

    def state(self) -> DescriptorState:
        if self.uploaded:
            return DescriptorState.PUBLISHED
        if self.failed and not self.pending:
            return DescriptorState.FAILED
        return DescriptorState.PUBLISHING

    def settled(self, now: float) -> bool:
        if not self.uploaded or self.first_success is None:
            return False
        if now - self.first_success >= UPLOAD_STRAGGLER_SECONDS:
            return True
        return not self.pending and now - self.last_change >= UPLOAD_QUIET_SECONDS

    def all_failed(self, now: float) -> bool:
        return (
            not self.uploaded
            and self.failed > 0
            and not self.pending
            and now - self.last_change >= UPLOAD_QUIET_SECONDS
        )


@dataclass(eq=False)
class ServiceRecord:
    seed: bytes = field(repr=False)
    address: OnionAddress
    virtual_port: int
    target: Target
    clients: tuple[bytes, ...]
    pow: bool = False  # PoWDefensesEnabled=1: tor has the pow module
    uploads: UploadRound = field(default_factory=UploadRound)
    republish_failures: int = 0
    # True from the moment tor may not hold the service (before DEL_ONION or
    # ADD_ONION) until an ADD_ONION's uploads settle; supervise() re-adds it.
    needs_publish: bool = True
    # Since when tor shows no established introduction circuit of the
    # service (None: it has some, or it was not looked at since).
    no_intro_since: float | None = None
    intro_republishes: int = 0  # republished for that, in a row

    def wants_republish(self, now: float) -> bool:
        return self.needs_publish or self.uploads.all_failed(now) or self.intro_lost(now)

    def intro_circuits(self, now: float, count: int | None) -> None:
        """tor shows ``count`` established introduction circuits of the service
        (None: whether it has some says nothing now, as tor's network is down)."""
        if count:
            self.no_intro_since = None
            self.intro_republishes = 0
        elif count is None:
            self.no_intro_since = None
        elif self.no_intro_since is None:
            self.no_intro_since = now

    def intro_lost(self, now: float) -> bool:
        """Whether the service had no introduction point for long enough to be
        published afresh (INTRO_LOST_SECONDS).

        tor's service side keeps, for 5 minutes, the relays whose introduction
        circuits failed too often, and picks none of them again; when relays
        restart (or our tor could not build circuits for a while) it can be
        left with no introduction point at all and no descriptor worth
        fetching, and tells nobody. A new ADD_ONION starts it afresh.
        """
        if self.no_intro_since is None or self.needs_publish:
            return False
        doublings: int = min(self.intro_republishes, INTRO_LOST_DOUBLINGS)
        return now - self.no_intro_since >= INTRO_LOST_SECONDS * (1 << doublings)

    def republished_for_lost_intro(self) -> None:
        self.intro_republishes += 1
        self.no_intro_since = None

    def add_onion_command(self) -> str:
        # control-spec §3.27: ADD_ONION KeyType:KeyBlob [Flags=...] Port=Virt,Target
        # [ClientAuthV3=...]*; V3Auth is required with client keys (TOR-TESTNET.md).
        # Client authorization is always on. With no client, the descriptor is
        # encrypted to a throwaway key whose private half nobody keeps, so "no
        # authorized clients" means nobody can connect, never "anyone can".
        clients = self.clients or (KeyPair.generate().public,)
        key = base64.b64encode(expanded_secret_key(self.seed)).decode("ascii")
        if isinstance(self.target, Path):
            target = f"unix:{self.target}"  # unquoted: ADD_ONION refuses quotes
        else:
            target = "{}:{}".format(*self.target)
        parts = [
            f"ADD_ONION ED25519-V3:{key}",
            "Flags=V3Auth,MaxStreamsCloseCircuit",
            f"MaxStreams={MAX_STREAMS_PER_CIRCUIT}",
        ]
        if self.pow:
            parts.append("PoWDefensesEnabled=1")
        parts.append(f"Port={self.virtual_port},{target}")
        # The x25519 public key in unpadded base32, as in a client's .auth file.
        parts.extend(
            "ClientAuthV3=" + base64.b32encode(k).decode("ascii").rstrip("=").lower()
            for k in clients
        )
        return " ".join(parts)


def check_x25519(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes) or len(key) != X25519_KEY_LEN:
        raise ConfigError(f"{what} must be {X25519_KEY_LEN} bytes of x25519 key")
    return key


def tor_has_pow(version: str) -> bool:
    """Whether tor ``version`` (GETINFO version, "0.4.9.11 (git-...)") has PoW defenses."""
    numbers = []
    for part in version.split(" ", 1)[0].split("-", 1)[0].split("."):
        if not part.isdigit():
            return False
        numbers.append(int(part))
    return tuple(numbers) >= POW_MIN_VERSION


def check_target(target: Target) -> Target:
    """A Unix socket path (absolute, fit for ADD_ONION), or (IP, port) on loopback."""
    if isinstance(target, Path):
        return check_unix_path(target, "the service's target")
    try:
        host, port = target
        loopback = ipaddress.ip_address(host).is_loopback
    except (ValueError, TypeError) as exc:
        raise ConfigError("target must be (IP address, port) on the loopback interface") from exc
    if not loopback or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError("target must be (IP address, port) on the loopback interface")
    return (host, port)


def check_port(port: int, what: str) -> int:
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{what} must be 1 to 65535")
    return port
