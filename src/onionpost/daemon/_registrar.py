"""The endpoint's side of its agency's registrar (``protocol-spec/trust.md`` §8).

Theory of operation
-------------------
::

    RegistrarLink.enrol(code)      the local API's trust_enrol: dial the registrar
                                   with the code's tor key, RgEnrol, install the
                                   endorsement, remember the registrar
    RegistrarLink.run()            one task in the daemon's nursery: every
                                   trust_refresh, one short session: RgFetch (the
                                   list held as `trust revocations import` holds it,
                                   with the registrar's consistency proof), and
                                   RgRenew when a third of our endorsement's life
                                   is left

The registrar's address is kept in ``HOME/registrar.txt`` (not secret: the
tor key we reach it with is our own client-authorization key, which the
registrar was given at enrolment). A round that fails (the registrar
unreachable, a refusal, a list that does not verify) is logged once and tried
again at the next interval, never more; the link never ends the daemon.

Logs carry reasons, never codes, tokens or keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from onionpost import api
from onionpost.daemon._common import now_ms
from onionpost.daemon.delivery import Imported, import_revocations, install_own
from onionpost.errors import (
    CloseCode,
    ConfigError,
    DialError,
    OnionpostError,
    RemoteProtocolError,
    TransportError,
    TrustError,
)
from onionpost.home import Secrets, write_atomic
from onionpost.host import StoreWorker, first_failure, reason
from onionpost.proto import messages as m
from onionpost.proto import trust
from onionpost.proto.address import OnionAddress
from onionpost.proto.registrar import (
    DelegationNotice,
    EnrolmentCode,
    delegation_notice,
    renewal_due,
)
from onionpost.proto.trust_session import RevocationBundle
from onionpost.store import Store
from onionpost.transport import SecureChannel

__all__ = ["RegistrarLink"]

log = logging.getLogger("onionpost.daemon")

T = TypeVar("T")
A = TypeVar("A", m.RgEndorsement, m.RgList)

RegistrarDial = Callable[[OnionAddress, bytes], Awaitable[SecureChannel]]

# A registrar session's whole round (dial, fetch, renew) must end within this.
ROUND_TIMEOUT: Final = 120.0
# An enrolment whose dial fails is tried again (a code just made may not be in
# the registrar's published descriptor yet), within this budget.
ENROL_BUDGET: Final = 50.0
ENROL_ATTEMPTS: Final = 6
# How often the daemon logs that our endorsement's delegation is ending.
DELEGATION_LOG_EVERY: Final = 86_400.0
REFUSED_TEXT: Final = (
    "the registrar refused: the enrolment code is unknown, used or expired, "
    "or this address was revoked (ask the registrar's operator)"
)


class RegistrarLink:
    """Our agency's registrar: enrolment, and the refresh task."""

    def __init__(  # noqa: PLR0917 - the parts it links
        self,
        secrets: Secrets,
        store: Store,
        file: Path,
        dial: RegistrarDial,
        worker: StoreWorker,
        refresh: float,
        *,
        held: Callable[[Imported], Awaitable[None]],
        installed: Callable[[], None],
    ) -> None:
        """``held`` acts on a list newly held (refusals, staples), ``installed``
        on a new endorsement of ours (staples)."""
        self._secrets = secrets
        self._store = store
        self._file = file
        self._dial = dial
        self._worker = worker
        self.refresh = refresh
        self._held = held
        self._installed = installed
        self._wake = trio.Event()
        self.rounds = 0
        self.last_error = ""
        self.last_round_ms: int | None = None
        self._ending_logged: float | None = None  # trio time of the last such log

    def __repr__(self) -> str:
        return f"RegistrarLink(rounds={self.rounds})"

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._worker(fn, *args)

    def registrar(self) -> OnionAddress | None:
        """The registrar we enrolled with, if any."""
        try:
            text = self._file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {self._file}") from exc
        return OnionAddress.parse(text)

    async def status(self) -> api.RegistrarStatus | None:
        """What ``status`` says of our registrar; None before an enrolment."""
        registrar = await self._db(self.registrar)
        if registrar is None:
            return None
        return api.RegistrarStatus(
            str(registrar), self.refresh, self.rounds, self.last_round_ms, self.last_error
        )

    async def delegation_ends(self) -> int | None:
        """When the agency's delegation under which our own endorsement was
        signed ends (POSIX seconds), once that is within DELEGATION_WARNING or
        past: our endorsement ends with it (trust.md §4 step 4). None when it
        is further off, or without an endorsement of ours."""
        own = await self._db(self._store.trust.own)
        end = None if own is None else _delegation_end(own[1])
        if end is None or delegation_notice(end, int(time.time())) is DelegationNotice.FAR:
            return None
        return end

    async def _log_delegation_ending(self) -> None:
        """Log, once a day while it lasts, that our delegation is ending."""
        end = await self.delegation_ends()
        now = trio.current_time()
        if end is None:
            self._ending_logged = None
            return
        if self._ending_logged is not None and now - self._ending_logged < DELEGATION_LOG_EVERY:
            return
        self._ending_logged = now
        when = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ended = end <= int(time.time())
        log.warning(
            "event=agency_delegation_%s at=%s",
            "ended" if ended else "ending",
            when,
        )

    def kick(self) -> None:
        """A round now, not at the end of the interval."""
        self._wake.set()

    # -- enrolment (the local API) ------------------------------------------------

    async def enrol(self, code_text: str) -> trust.Verdict:
        code = EnrolmentCode.parse_for(code_text, self._secrets.identity.address)
        failure: BaseException | None = None
        deadline = trio.current_time() + ENROL_BUDGET
        for attempt in range(ENROL_ATTEMPTS):
            failure = None
            try:
                with trio.fail_at(min(deadline, trio.current_time() + ROUND_TIMEOUT)):
                    proof = await self._exchange(
                        code.registrar,
                        code.client_auth_private(),
                        lambda req: m.RgEnrol(req, code.token(), self._secrets.client_auth_public),
                        m.RgEndorsement,
                    )
                break
            except* trio.TooSlowError:
                failure = TransportError("timeout", reason="timeout")
            except* OnionpostError as group:
                failure = first_failure(group)
            # On the way to the registrar (a dial, a session cut before the
            # answer): the same code again is safe, the registrar answers a
            # repeat from the same address with the same endorsement.
            retry = isinstance(failure, DialError) or (
                isinstance(failure, TransportError) and failure.reason != "refused"
            )
            if not retry or trio.current_time() + 2.0 >= deadline:
                break
            await trio.sleep(min(2.0 * (attempt + 1), 8.0))
        if failure is not None:
            log.info("event=enrolment_failed reason=%s", reason(failure))
            if isinstance(failure, DialError | TransportError):
                # As tor refuses a client whose key is no longer authorized,
                # a used or expired code cannot even reach the registrar.
                raise ConfigError(
                    "the registrar cannot be reached with this enrolment code: it was used or "
                    "has expired (ask its operator for a new one), or the registrar is not "
                    f"running [{reason(failure)}]"
                ) from failure
            raise failure
        verdict = await self._install(proof.proof)
        try:
            write_atomic(self._file, f"{code.registrar}\n".encode(), mode=0o600)
        except OSError as exc:
            raise ConfigError(f"cannot write {self._file}: {exc.strerror}") from exc
        log.info("event=enrolled")
        self._wake.set()  # fetch the list now
        return verdict

    async def _install(self, proof: bytes) -> trust.Verdict:
        address = str(self._secrets.identity.address)
        verdict = await self._db(install_own, self._store, address, proof, now_ms())
        self._installed()
        return verdict

    async def _exchange(
        self,
        registrar: OnionAddress,
        client_auth: bytes,
        make: Callable[[int], m.Message],
        answer: type[A],
    ) -> A:
        """One request on a new session; the answer, or ConfigError for a refusal."""
        channel = await self._dial(registrar, client_auth)
        try:
            return await _ask(channel, 1, make, answer)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await channel.aclose()

    # -- the refresh task --------------------------------------------------------------

    async def run(self) -> None:
        """Every refresh interval, a round with our registrar. Never raises but Cancelled."""
        while True:
            self._wake = trio.Event()
            failure: BaseException | None = None
            try:
                await self._log_delegation_ending()
                registrar = await self._db(self.registrar)
                if registrar is not None:
                    with trio.fail_after(ROUND_TIMEOUT):
                        await self.round(registrar)
            except* trio.TooSlowError:
                failure = TransportError("timeout", reason="timeout")
            except* Exception as group:
                failure = first_failure(group)
            if failure is not None:
                self.last_error = reason(failure)
                log.info("event=registrar_round_failed reason=%s", self.last_error)
                if not isinstance(failure, OnionpostError):
                    log.warning("event=registrar_round_error", exc_info=failure)
            with trio.move_on_after(self.refresh):
                await self._wake.wait()

    async def round(self, registrar: OnionAddress) -> None:
        """Fetch the list (and renew our endorsement if due) on one session."""
        own = await self._db(self._store.trust.own)
        held = await self._db(self._store.trust.held)
        size = 0
        if own is not None:
            checkpoint = held.get(own[0], (None, None))[1]
            if checkpoint is not None:
                size = trust.stored_checkpoint(checkpoint).checkpoint.size
        channel = await self._dial(registrar, self._secrets.client_auth_private)
        try:
            listed = await _ask(channel, 1, lambda req: m.RgFetch(req, size), m.RgList)
            await self._take_list(listed)
            if own is not None and self._renewal_due(own[1]):
                renewed = await _ask(channel, 2, m.RgRenew, m.RgEndorsement)
                if renewed.proof != own[1]:
                    await self._install(renewed.proof)
                    log.info("event=endorsement_renewed")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await channel.aclose()
        self.rounds += 1
        self.last_error = ""
        self.last_round_ms = now_ms()

    async def _take_list(self, listed: m.RgList) -> None:
        bundle = RevocationBundle(listed.delegation, listed.revocations, listed.checkpoint)
        try:
            done = await self._db(
                import_revocations, self._store, bundle.encode(), now_ms(), listed.hashes()
            )
        except ConfigError as exc:
            if "held already" in str(exc):
                return  # nothing new since the last round
            raise
        log.info("event=registrar_list_held serial=%d revoked=%d", done.serial, done.revoked)
        await self._held(done)

    def _renewal_due(self, proof: bytes) -> bool:
        """Whether our endorsement has less than a third of its life left
        (its statement read, not verified again: it was when installed)."""
        try:
            decoded = trust.EndorsementProof.decode(proof)
            endorsement = trust.stored_endorsement(decoded.endorsement)
        except TrustError:
            return True
        return renewal_due(endorsement.valid_from, endorsement.valid_until, int(time.time()))


def _delegation_end(proof: bytes) -> int | None:
    """When the delegation in our endorsement proof ends (read, not verified
    again: it was when installed); None if it is unreadable."""
    try:
        return trust.claimed_delegation(trust.EndorsementProof.decode(proof).delegation).not_after
    except TrustError:
        return None


async def _ask(
    channel: SecureChannel, req: int, make: Callable[[int], m.Message], answer_type: type[A]
) -> A:
    """Send ``make(req)`` and wait for its answer, an ``answer_type``: a refusal
    is a ConfigError, the other answer a registrar gives (an RgList for an
    RgEnrol) a RemoteProtocolError, anything else out of turn a TransportError."""
    await channel.send(make(req))
    while True:
        try:
            answer = await channel.receive()
        except trio.EndOfChannel:
            raise TransportError("the registrar closed the session", reason="ended") from None
        if isinstance(answer, m.UnknownExtension | m.Ping | m.Pong):
            continue
        if isinstance(answer, m.RgResult) and answer.req == req:
            raise ConfigError(REFUSED_TEXT)
        if isinstance(answer, m.RgEndorsement | m.RgList) and answer.req == req:
            if isinstance(answer, answer_type):
                return answer
            raise RemoteProtocolError(
                f"the registrar answered with {type(answer).__name__}, not {answer_type.__name__}",
                close_code=CloseCode.BAD_MESSAGE,
            )
        raise TransportError("the registrar answered out of turn", reason="broken")
