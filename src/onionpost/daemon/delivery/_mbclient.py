"""One request/answer client over a session with a mailbox (mailbox.md §6).

Used by both roles an endpoint plays towards mailboxes: the owner (pairing,
upkeep, draining its own) and the sender (deposits into a contact's). Run
:meth:`MailboxClient.pump` beside the requests: it hands each answer to the
request waiting for it and, for an owner, envelopes to :attr:`envelopes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from onionpost.errors import CloseCode, MailboxRefusedError, RemoteProtocolError, TransportError
from onionpost.host import code_name
from onionpost.proto import messages
from onionpost.transport import SecureChannel

__all__ = ["MailboxClient", "mailbox_refusal"]

# Envelopes received and not yet processed, before the pump stops reading.
MAX_QUEUED_ENVELOPES: Final = 8


@dataclass(eq=False)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    answer: messages.Message | None = None


class MailboxClient:
    """Requests and their answers over one session with a mailbox.

    ``answer_timeout`` is the daemon's policy: a request unanswered that long
    ends the session (TransportError "timeout"), so a mailbox that takes
    requests and answers none holds nothing of ours. ``owner``: envelopes are
    expected (a depositor receiving one is a protocol error).
    """

    def __init__(self, channel: SecureChannel, *, answer_timeout: float, owner: bool) -> None:
        self.channel = channel
        self._answer_timeout = answer_timeout
        self._owner = owner
        self._req = 0
        self._pending: dict[int, _Pending] = {}
        self._envelopes_in, self.envelopes = trio.open_memory_channel[messages.MbEnvelope](
            MAX_QUEUED_ENVELOPES
        )

    def __repr__(self) -> str:
        return f"MailboxClient(pending={len(self._pending)})"

    def next_req(self) -> int:
        self._req += 1
        return self._req

    async def request(self, make: Callable[[int], messages.Message]) -> messages.Message:
        req = self.next_req()
        pending = _Pending()
        self._pending[req] = pending
        try:
            await self.channel.send(make(req))
            with trio.fail_after(self._answer_timeout):
                await pending.done.wait()
        except trio.TooSlowError:
            raise TransportError("timeout", reason="timeout") from None
        finally:
            self._pending.pop(req, None)
        assert pending.answer is not None
        return pending.answer

    async def ok(self, make: Callable[[int], messages.Message], what: str) -> messages.MbResult:
        """A request that must be answered OK; anything else: MailboxRefusedError."""
        answer = await self.request(make)
        if not isinstance(answer, messages.MbResult) or answer.code != messages.MbCode.OK:
            raise mailbox_refusal(answer, what)
        return answer

    async def pump(self) -> None:
        """Records in: answers to whoever waits, envelopes to :attr:`envelopes`."""
        async with self._envelopes_in:
            while True:
                try:
                    record = await self.channel.receive()
                except trio.EndOfChannel:
                    if self.channel.close_code == CloseCode.BAD_MESSAGE:
                        # Our mailbox records were refused: whatever answers
                        # there is no mailbox.
                        raise RemoteProtocolError(
                            "the peer refused a mailbox's records",
                            close_code=CloseCode.BAD_MESSAGE,
                        ) from None
                    raise TransportError("the mailbox closed the session", reason="ended") from None
                if isinstance(record, messages.MbEnvelope) and self._owner:
                    await self._envelopes_in.send(record)
                elif isinstance(record, messages.MbResult | messages.MbPrekey | messages.MbUsage):
                    pending = self._pending.get(record.req)
                    if pending is not None:
                        pending.answer = record
                        pending.done.set()
                elif not isinstance(
                    record, messages.Ping | messages.Pong | messages.UnknownExtension
                ):
                    raise RemoteProtocolError(
                        f"{type(record).__name__} from a mailbox",
                        close_code=CloseCode.BAD_MESSAGE,
                    )


def mailbox_refusal(answer: messages.Message, what: str) -> MailboxRefusedError:
    if isinstance(answer, messages.MbResult):
        said = answer.detail or code_name(messages.MbCode, answer.code)
        return MailboxRefusedError(
            f"the mailbox refused the {what}: {said}",
            code=answer.code,
            detail=answer.detail,
        )
    return MailboxRefusedError(
        f"the mailbox answered the {what} with {type(answer).__name__}",
        code=messages.MbCode.BAD_REQUEST,
    )
