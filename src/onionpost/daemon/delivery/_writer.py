"""Group commit, over the store worker (:class:`~onionpost.host.StoreWorker`).

:class:`GroupCommit` gathers the writes that arrive while one commits and
runs them in the next transaction: concurrent writers share one commit and
one fsync, and each write is undone alone if it fails (a savepoint).

A write nobody waits for (:meth:`GroupCommit.write_later`: a ``sent`` mark,
a contact's last-seen time) does not wake the writer: it rides on the next
write somebody waits for, or commits on its own after ``LATER_SECONDS``.
A burst of sends so adds no commit (no fsync, no binding record) of its own
for its ``sent`` marks.

The WAL's checkpoint (every few thousand pages) runs after a batch's
callers have their answer, as a call of its own (the writes arriving
meanwhile make the next group): the store defers it to the writer
(:meth:`~onionpost.store.Store.defer_checkpoints`), so no caller waits for it.

What must follow a commit in commit order (a text handed to its session
after the texts committed before it) goes in a write's ``then``: the writes'
``then`` run in the order the transaction ran them, before any waiting
caller resumes (trio resumes those in no set order).

While :attr:`GroupCommit.alone` (set by its owner until it starts
:meth:`~GroupCommit.run`: the daemon still starting) a write commits alone,
at once.

A batch that does not commit because the writer was cancelled fails each of
its writes with "the daemon is stopping"; one cut off by an exception that
is no :class:`~onionpost.errors.OnionpostError` (a bug) fails them with "an
internal error", logged once with the exception's type, and the exception
goes on up (the writer ends). The writes still waiting then are told the same.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

import trio

from onionpost.errors import NoSpaceError, OnionpostError, StoreError
from onionpost.host import Kick, StoreWorker
from onionpost.store import Store

__all__ = ["GroupCommit"]

log = logging.getLogger("onionpost.daemon")

T = TypeVar("T")

# Writes taken into one transaction at most.
COMMIT_GROUP_MAX: Final = 2048
# Scheduling passes the writer lets go by before it takes a group, unless
# as many writes somebody waits for are there as the last group answered
# (its callers are back: the passes would only let other tasks go first).
GATHER_PASSES: Final = 2
# Seconds a write nobody waits for waits for one to ride on.
LATER_SECONDS: Final = 0.5
# Seconds the writer may take, when stopping, to commit what nobody waits for.
STOP_GRACE: Final = 2.0

# What a write that did not commit is told, by what ended the writer.
STOPPING: Final = "the daemon is stopping"
INTERNAL: Final = "an internal error stopped the store writer (see the daemon's log)"


@dataclass(eq=False, slots=True)
class _Write:
    """One store call waiting for the writer's next transaction."""

    call: Callable[[], Any]
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: OnionpostError | None = None
    # Called with the result once committed (in commit order).
    then: Callable[[Any], None] | None = None
    later: bool = False  # nobody waits for it (write_later)


class GroupCommit:
    """Many writes, one transaction; see the module docstring. :meth:`run`
    must be running for :meth:`write` to return."""

    def __init__(self, store: Store, worker: StoreWorker) -> None:
        self._store = store
        self._worker = worker
        store.defer_checkpoints()
        self._writes: list[_Write] = []
        self._ready = Kick()
        self._awaited = 0  # writes in _writes somebody waits for
        self._answered = 0  # writes somebody waited for in the last group
        self._later_due = 0.0  # when the later writes waiting commit on their own
        # Set by the owner until it starts run(): a write then commits alone.
        self.alone = False

    def __repr__(self) -> str:
        return f"GroupCommit({len(self._writes)} waiting)"

    async def write(
        self,
        fn: Callable[..., T],
        *args: Any,
        then: Callable[[T], None] | None = None,
        **kwargs: Any,
    ) -> T:
        """Run a store call that changes something in the next transaction, and
        return its result once that has committed (durable). ``then(result)``
        runs once committed, in commit order (see the module docstring)."""
        write = _Write(partial(fn, *args, **kwargs), then=then)
        if self.alone:
            return await self._alone(write)  # type: ignore[no-any-return]
        self._writes.append(write)
        self._awaited += 1
        self._ready.fire()
        await write.done.wait()
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[no-any-return]

    def write_later(self, then: Callable[[Any], None], fn: Callable[..., Any], *args: Any) -> None:
        """A change nobody waits for: it joins the next transaction, and
        ``then(result)`` runs once committed: with the next write somebody
        waits for, or after LATER_SECONDS. Callers check :meth:`busy` first,
        so these cannot pile up."""
        first = not self._writes
        if first:
            self._later_due = trio.current_time() + LATER_SECONDS
        self._writes.append(_Write(partial(fn, *args), then=then, later=True))
        if first or self.busy():
            self._ready.fire()  # the writer sets its clock, or takes a full group

    def busy(self) -> bool:
        return len(self._writes) >= COMMIT_GROUP_MAX

    async def _alone(self, write: _Write) -> Any:
        """A write while :attr:`alone` (the daemon starting, its tor not up
        yet, while the local API already answers): committed on its own, so
        that a send is queued, durably, rather than left waiting for run()."""
        await self._worker(self._commit, [write])
        if write.error is not None:
            raise write.error
        if write.then is not None:
            write.then(write.result)
        return write.result

    async def run(self) -> None:
        why = STOPPING
        try:
            while True:
                if not self._writes:
                    await self._ready.wait()
                    continue
                if not self._awaited and not self.busy():
                    # Only writes nobody waits for: wait for one to ride on.
                    with trio.move_on_at(self._later_due):
                        await self._ready.wait()
                    if (
                        not self._awaited
                        and not self.busy()
                        and trio.current_time() < self._later_due
                    ):
                        continue
                # Let the callers the last commit woke queue their next write
                # first: one scheduling pass makes the group larger at no cost.
                for _ in range(GATHER_PASSES):
                    if self._answered and self._awaited >= self._answered:
                        break
                    await trio.lowlevel.cancel_shielded_checkpoint()
                batch = self._writes[:COMMIT_GROUP_MAX]
                del self._writes[:COMMIT_GROUP_MAX]
                self._awaited = sum(not write.later for write in self._writes)
                self._later_due = trio.current_time() + LATER_SECONDS
                try:
                    await self._worker(self._commit, batch)
                except OnionpostError as exc:
                    for write in batch:
                        write.error = exc
                        write.result = None
                except BaseException as exc:
                    # Cancelled before the call ran, or the transaction rolled
                    # back under an exception of a bug: nothing of the batch
                    # was committed.
                    for write in batch:
                        write.error = StoreError(_ended_by(exc))
                        write.result = None
                    raise
                finally:
                    self._answered = 0
                    for write in batch:
                        write.done.set()
                        self._answered += not write.later
                        if write.then is not None and write.error is None:
                            write.then(write.result)
                if self._store.checkpoint_due():
                    try:
                        await self._worker(self._store.checkpoint_if_due)
                    except OnionpostError as exc:
                        # The commits are durable; the next batch tries again.
                        log.warning("event=wal_checkpoint_failed error=%s", type(exc).__name__)
        except BaseException as exc:
            why = _ended_by(exc)
            if why is INTERNAL:
                # Its type only: it goes on up, traceback and all, and its
                # text may hold what the store held.
                log.error("event=store_writer_failed error=%s", type(exc).__name__)  # noqa: TRY400
            raise
        finally:
            await self._stop(why)

    async def _stop(self, why: str) -> None:
        """The writes left: those nobody waits for are committed (a last-seen
        time, a ``sent`` mark), briefly; the others fail with ``why`` (their
        callers are, most often, being cancelled with the writer)."""
        writes, self._writes = self._writes, []
        later = [write for write in writes if write.later][:COMMIT_GROUP_MAX]
        if later:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(STOP_GRACE),
                contextlib.suppress(OnionpostError),
            ):
                await self._worker(self._commit, later)
        for write in writes:
            if not write.later:
                write.error = StoreError(why)
                write.done.set()

    def _commit(self, batch: Sequence[_Write]) -> None:
        """In the worker: the batch in one transaction (each store call is a
        savepoint of its own inside it)."""
        with self._store.transaction():
            for write in batch:
                try:
                    write.result = write.call()
                except NoSpaceError:
                    raise  # SQLite may have rolled the whole transaction back
                except OnionpostError as exc:
                    write.error = exc


def _ended_by(exc: BaseException) -> str:
    """What the writes that did not commit are told when ``exc`` ends the
    writer: the daemon stopping (cancelled, interrupted) or a bug."""
    if isinstance(exc, (trio.Cancelled, KeyboardInterrupt, SystemExit)):
        return STOPPING
    return INTERNAL
