"""The ``sent`` marks, written late: an acknowledgement that comes first settles them.

A text that left on a session is ``sent`` until its contact acknowledges it.
The mark only informs (a text that shows ``queued`` again after a crash is
sent again, which the receiver's de-duplication makes harmless), and on a
live session the acknowledgement most often follows within milliseconds;
writing the mark then costs a row update and an evidence entry for a state
that lasted a few milliseconds. So :class:`SentMarks` holds the ids that left
for ``SENT_MARK_SECONDS``: those acknowledged meanwhile go from ``queued`` to
``delivered`` (one update, one ``delivered`` entry: evidence.md §2), the
others are marked ``sent`` then and their ``sent`` event is published once
it is written. The mark is a write nobody waits for, with the next group
commit, unless the writer is busy: then :meth:`SentMarks.run` waits for it,
so the writer's backlog stays bounded.

Bounded: past ``SENT_MARKS_MAX`` ids (or sends) held, the oldest are
dropped unmarked, and at a stop the marks still held are dropped too. Those
texts show ``queued`` until they are acknowledged or sent again, as after a
crash.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from onionpost.host import Kick

__all__ = ["SENT_MARK_SECONDS", "SENT_MARKS_MAX", "SentMarks"]

# Seconds a text that left waits for its acknowledgement before it is marked sent.
SENT_MARK_SECONDS: Final = 1.0
# Ids held at most; past it the oldest are dropped unmarked.
SENT_MARKS_MAX: Final = 16384

# What marks a contact's ids sent (returns once the write is queued, or
# written when the writer is busy).
Mark = Callable[[int, list[bytes]], Awaitable[None]]


class SentMarks:
    """Ids that left on a session, not yet marked ``sent``; see the module docstring."""

    def __init__(self) -> None:
        self._held: dict[bytes, int] = {}  # id -> contact id, in the order they left
        self._due: deque[tuple[float, list[bytes]]] = deque()  # (when, ids), in order
        self._kick = Kick()

    def __repr__(self) -> str:
        return f"SentMarks({len(self._held)} held)"

    def __len__(self) -> int:
        return len(self._held)

    def left(self, contact_id: int, ids: Sequence[bytes]) -> None:
        """``ids`` left on a session to ``contact_id``: marked sent in
        SENT_MARK_SECONDS unless acknowledged first (the oldest are dropped
        unmarked when too many are held)."""
        if not ids:
            return
        first = not self._due
        for message_id in ids:
            self._held[message_id] = contact_id
        self._due.append((trio.current_time() + SENT_MARK_SECONDS, list(ids)))
        while self._over():
            for message_id in self._due.popleft()[1]:
                self._held.pop(message_id, None)
        if first:
            self._kick.fire()

    def settled(self, ids: Sequence[bytes]) -> None:
        """``ids`` were acknowledged: no ``sent`` mark for them."""
        held = self._held
        for message_id in ids:
            held.pop(message_id, None)

    async def run(self, mark: Mark) -> None:
        """Mark what is due, as it falls due (a task of the engine's)."""
        while True:
            if not self._due:
                await self._kick.wait()
                continue
            with trio.move_on_at(self._due[0][0]):
                await trio.sleep_forever()
            for contact_id, ids in self._take(due_by=trio.current_time()).items():
                await mark(contact_id, ids)

    def _over(self) -> bool:
        return len(self._held) > SENT_MARKS_MAX or len(self._due) > SENT_MARKS_MAX

    def _take(self, due_by: float) -> dict[int, list[bytes]]:
        """The held ids due by ``due_by``, by contact, in the order they left."""
        by_contact: dict[int, list[bytes]] = {}
        held = self._held
        while self._due and self._due[0][0] <= due_by:
            for message_id in self._due.popleft()[1]:
                contact_id = held.pop(message_id, None)
                if contact_id is not None:
                    by_contact.setdefault(contact_id, []).append(message_id)
        return by_contact
