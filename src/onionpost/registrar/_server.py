"""The registrar's session server: enrolment, renewal and the lists it serves
(``protocol-spec/trust.md`` §8).

Theory of operation
-------------------
::

    RegistrarServer.run()          one nursery: the part's own core
    ├── publisher                  tells tor who is authorized, after each change
    ├── refresher                  a fresh revocation list every refresh interval (§5)
    ├── housekeeping               expired codes leave what tor authorizes
    └── delegation watch           says, once a day, that the delegation ends soon
                                   or has ended (trust.md §8.1)
    run_inbound(channel)           one per session: a request in, its answer out

*Who may connect.* Tor lets in only clients holding an authorized key: the
enrolled endpoints that are not revoked, and the keys of codes not used nor
expired. After the handshake :meth:`decide` accepts an enrolled endpoint, or
anyone while a code waits (it enrols or nothing).

*One answer per request*, in order: RgEnrol and RgRenew are answered with an
RgEndorsement, RgFetch with an RgList; anything refused (a code unknown, used
by another endpoint or expired, an endpoint not enrolled or revoked, a
registrar that cannot sign) with the one ``RgResult(req, REFUSED,
"refused")``, so a peer never learns why. A record a registrar never takes
ends the session with Close(BAD_MESSAGE).

*Failure domains* (STYLE 16): a session is one; whatever ends it is logged
once. A list the refresher could not sign (a full disk) is logged and tried
again at the next round; with the delegation ended nothing is signed (an
endpoint would refuse it) and the watch says so once a day, until the root's
new delegation is handed over (:meth:`RegistrarServer.install_delegation`,
``registrar delegation``), which takes effect at once, without a restart.

*Bounds.* Records per session per second (a token bucket), sessions per
peer, codes waiting, endpoints (:mod:`onionpost.limits`).

Logs name endpoints by address at DEBUG only, never tokens or keys.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio

from onionpost.errors import CloseCode, ConfigError, OnionpostError, StoreError
from onionpost.home import Config
from onionpost.host import (
    CLOSE_GRACE,
    ClientsPublisher,
    MeteredReceiver,
    PeerSessions,
    Shed,
    StoreWorker,
    ThreadWorker,
    first_failure,
    refuse_session,
)
from onionpost.host import reason as failure_reason
from onionpost.limits import REGISTRAR_REFRESH
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.registrar import DelegationNotice, check_refresh, delegation_notice
from onionpost.proto.session import PeerDecision
from onionpost.proto.trust import Delegation, RevocationList
from onionpost.proto.trust_session import RevocationBundle
from onionpost.registrar._book import Enrolled, IssuedEnrolment, RegistrarBook
from onionpost.transport import SecureChannel

__all__ = [
    "HOUSEKEEPING_INTERVAL",
    "MAX_SESSIONS_PER_PEER",
    "REFUSED_DETAIL",
    "RegistrarPolicy",
    "RegistrarServer",
]

log = logging.getLogger("onionpost.registrar")

T = TypeVar("T")

HOUSEKEEPING_INTERVAL: Final = 60.0
MAX_SESSIONS_PER_PEER: Final = 2
# A list that could not be signed is tried again this soon.
SIGN_RETRY: Final = 30.0
REFUSED_DETAIL: Final = "refused"
# How often the delegation's end is looked at, and how often it is said (seconds).
DELEGATION_CHECK: Final = 3600.0
DELEGATION_REMINDER: Final = 86_400
DELEGATION_HINT: Final = (
    "the agency's root signs a new one offline ('onionpost trust delegate'), "
    "handed to this registrar with 'onionpost registrar delegation FILE'"
)


def _wall_s() -> int:
    return int(time.time())


def _utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    """A registrar's timers (``config.toml``'s ``registrar_*`` settings)."""

    refresh: int = REGISTRAR_REFRESH  # seconds between fresh lists
    endorsement_days: int = 7
    records_per_second: float = 20.0

    def __post_init__(self) -> None:
        check_refresh(self.refresh)
        if not 1 <= self.endorsement_days <= 30:
            raise ConfigError("registrar_endorsement_days must be 1 to 30")

    @classmethod
    def from_config(cls, config: Config) -> RegistrarPolicy:
        return cls(
            refresh=int(config.registrar_refresh),
            endorsement_days=config.registrar_endorsement_days,
        )


def _refused(req: int) -> m.RgResult:
    return m.RgResult(req, m.RgCode.REFUSED, REFUSED_DETAIL)


class RegistrarServer:
    """A registrar's sessions and timers over its :class:`RegistrarBook`; see
    the module docstring. ``clock()`` is POSIX seconds; ``worker`` runs the
    book's calls one at a time (a thread; tests on virtual time give an
    :class:`~onionpost.host.InlineWorker`)."""

    def __init__(
        self,
        book: RegistrarBook,
        policy: RegistrarPolicy,
        *,
        address: OnionAddress,
        clients_changed: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], int] = _wall_s,
        worker: StoreWorker | None = None,
    ) -> None:
        self._book = book
        self._policy = policy
        self._address = address
        self._clock = clock
        self._worker = worker or ThreadWorker()
        self._clients = ClientsPublisher(self.authorized_clients, clients_changed, log=log)
        self._sessions: PeerSessions[int] = PeerSessions(MAX_SESSIONS_PER_PEER)
        self._serials = itertools.count(1)
        self.lists_signed = 0

    def __repr__(self) -> str:
        return f"RegistrarServer({self._address})"

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._worker(fn, *args, **kwargs)

    # -- the core -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: a list signed now if due, then the publisher,
        the refresher and housekeeping."""
        await self._refresh_list()
        async with trio.open_nursery() as nursery:
            self._clients.start(nursery)
            nursery.start_soon(self._refresher)
            nursery.start_soon(self._housekeeping)
            nursery.start_soon(self._watch_delegation)
            task_status.started()

    async def _refresh_list(self) -> bool:
        """Sign a fresh list if one is due; False when signing failed, or
        when the delegation has ended (the watch says so, once a day)."""
        ended = delegation_notice(self._book.delegation.not_after, self._clock())
        if ended is DelegationNotice.ENDED:
            return False
        try:
            if await self._db(self._book.refresh, self._clock(), self._policy.refresh):
                self.lists_signed += 1
                held = self._book.revocations
                assert held is not None
                log.info("event=list_signed serial=%d revoked=%d", held.serial, len(held.revoked))
        except (ConfigError, StoreError) as exc:
            log.warning("event=list_sign_failed error=%s", exc)
            return False
        return True

    async def _refresher(self) -> None:
        while True:
            held = self._book.revocations
            wait = float(self._policy.refresh)
            if held is not None:
                wait = max(1.0, held.issued_at + self._policy.refresh - self._clock())
            await trio.sleep(wait)
            if not await self._refresh_list():
                await trio.sleep(SIGN_RETRY)

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(HOUSEKEEPING_INTERVAL)
            self._clients.changed()  # codes that expired leave what tor authorizes

    async def _watch_delegation(self) -> None:
        """Say in the log, at once and then once a day, that the delegation
        ends within DELEGATION_WARNING, or has ended (at once when it ends)."""
        said: tuple[DelegationNotice, int] | None = None  # what was said last, and when
        while True:
            now = self._clock()
            not_after = self._book.delegation.not_after
            notice = delegation_notice(not_after, now)
            if notice is DelegationNotice.FAR:
                said = None
            elif said is None or said[0] is not notice or now - said[1] >= DELEGATION_REMINDER:
                said = (notice, now)
                if notice is DelegationNotice.ENDED:
                    log.error(
                        "event=delegation_ended ended_at=%s: this registrar signs nothing "
                        "endpoints accept; %s",
                        _utc(not_after),
                        DELEGATION_HINT,
                    )
                else:
                    log.warning(
                        "event=delegation_ending ends_at=%s days_left=%d: %s",
                        _utc(not_after),
                        (not_after - now) // 86_400,
                        DELEGATION_HINT,
                    )
            await trio.sleep(DELEGATION_CHECK)

    async def wait_published(self) -> None:
        """Until tor has been given the keys authorized now (the caller bounds it)."""
        await self._clients.wait_published()

    # -- who may connect ---------------------------------------------------------------

    def decide(self, peer: OnionAddress) -> PeerDecision:
        """ACCEPT an enrolled endpoint not revoked, or anyone while a code waits."""
        if self._book.member(str(peer)) or self._book.open_codes(self._clock()):
            return PeerDecision.ACCEPT
        return PeerDecision.REFUSE

    def authorized_clients(self) -> list[bytes]:
        return self._book.authorized_clients(self._clock())

    # -- the operator's side (the local API) -------------------------------------------

    async def new_code(
        self,
        endpoint: str,
        unit: str,
        expires: int,
        *,
        replaces: str = "",
        from_revoked: bool = False,
    ) -> IssuedEnrolment:
        issued = await self._db(
            self._book.new_code,
            self._address,
            endpoint,
            unit,
            now=self._clock(),
            expires=expires,
            replaces=replaces,
            from_revoked=from_revoked,
        )
        self._clients.changed()
        log.info("event=enrolment_code_made expires_in=%d moves=%s", expires, bool(replaces))
        return issued

    async def revoke(self, address: str, reason: str, *, force: bool = False) -> RevocationList:
        listed = await self._db(self._book.revoke, address, reason, now=self._clock(), force=force)
        self.lists_signed += 1
        self._clients.changed()
        log.warning("event=revoked serial=%d revoked=%d", listed.serial, len(listed.revoked))
        return listed

    async def install_delegation(self, data: bytes) -> Delegation:
        """Take the root's new delegation of our issuing key (checked first;
        nothing changes if it is refused): from now on every endorsement,
        renewal and list carries it."""
        new = await self._db(self._book.install_delegation, data, now=self._clock())
        log.info(
            "event=delegation_renewed not_before=%s not_after=%s log_size=%d",
            _utc(new.not_before),
            _utc(new.not_after),
            self._book.log.size,
        )
        return new

    async def export_list(self) -> RevocationBundle:
        """The latest list, its delegation and checkpoint as one file
        (trust.md §7.3): read in the worker, so never half of a new list."""
        return await self._db(self._book.export_list)

    def endpoints(self) -> list[Enrolled]:
        return self._book.endpoints()

    @property
    def book(self) -> RegistrarBook:
        return self._book

    @property
    def policy(self) -> RegistrarPolicy:
        return self._policy

    # -- sessions ----------------------------------------------------------------------

    async def run_inbound(self, channel: SecureChannel) -> None:
        """Serve one session. Never raises but Cancelled."""
        key = channel.peer.public_key
        serial = next(self._serials)
        if not self._sessions.admit(key, serial):
            await refuse_session(channel, serial, log)
            return
        log.info("event=session_up session=%d", serial)
        log.debug("event=session_up session=%d peer=%s", serial, channel.peer)
        failure: BaseException | None = None
        try:
            try:
                await self._serve(channel)
            except* Exception as group:
                failure = first_failure(group)
        finally:
            self._sessions.leave(key, serial)
            code, why = CloseCode.NORMAL, ""
            if isinstance(failure, Shed):
                code, why = failure.code, str(failure)
            elif failure is not None and not isinstance(failure, OnionpostError):
                code = CloseCode.INTERNAL_ERROR
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                await channel.aclose(code, why)
            reason = "closed" if failure is None else failure_reason(failure)
            log.info("event=session_down session=%d reason=%s", serial, reason)
            if failure is not None and not isinstance(failure, OnionpostError):
                log.warning("event=session_error session=%d", serial, exc_info=failure)

    async def _serve(self, channel: SecureChannel) -> None:
        records = MeteredReceiver(channel, self._policy.records_per_second)
        while True:
            try:
                record = await records.receive()
            except trio.EndOfChannel:
                return
            if isinstance(record, m.UnknownExtension | m.Ping | m.Pong):
                continue
            if isinstance(record, m.RgEnrol):
                answer = await self._enrol(channel.peer, record)
            elif isinstance(record, m.RgRenew):
                answer = await self._renew(channel.peer, record)
            elif isinstance(record, m.RgFetch):
                answer = await self._fetch(channel.peer, record)
            else:
                raise Shed(
                    f"a registrar does not take {type(record).__name__}",
                    code=CloseCode.BAD_MESSAGE,
                    reason=f"unexpected-{type(record).__name__}",
                )
            await channel.send(answer)

    async def _signing(
        self, fn: Callable[..., bytes | None], *args: Any, **kwargs: Any
    ) -> bytes | None:
        """A book call that may sign; a registrar that cannot sign refuses."""
        try:
            return await self._db(fn, *args, **kwargs)
        except (ConfigError, StoreError) as exc:
            log.warning("event=sign_failed error=%s", exc)
            return None

    async def _enrol(self, peer: OnionAddress, record: m.RgEnrol) -> m.Message:
        proof = await self._signing(
            self._book.enrol,
            peer,
            record.token,
            record.client_auth_public,
            now=self._clock(),
            days=self._policy.endorsement_days,
        )
        if proof is None:
            log.info("event=enrolment_refused")
            return _refused(record.req)
        self._clients.changed()
        log.info("event=enrolled")
        log.debug("event=enrolled endpoint=%s", peer)
        return m.RgEndorsement(record.req, proof)

    async def _renew(self, peer: OnionAddress, record: m.RgRenew) -> m.Message:
        proof = await self._signing(
            self._book.renew, peer, now=self._clock(), days=self._policy.endorsement_days
        )
        if proof is None:
            log.info("event=renewal_refused")
            return _refused(record.req)
        return m.RgEndorsement(record.req, proof)

    async def _fetch(self, peer: OnionAddress, record: m.RgFetch) -> m.Message:
        served = await self._db(self._book.fetch, peer, record.size)
        if served is None:
            return _refused(record.req)
        b = served.bundle
        return m.RgList(
            record.req, b.delegation, b.revocations, b.checkpoint, b"".join(served.consistency)
        )
