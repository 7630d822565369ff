"""The client of the daemon's local API: one connection, typed calls.

Theory of operation: :func:`open_client` connects to the daemon's unix
socket; each :class:`Client` call writes one request line and reads lines
until the reply with its id (``protocol-spec/local-api.md``). One client
may be shared by tasks, and their calls are pipelined on its connection:
each writes its request line whole (a lock orders the writes), and whichever
waiting caller is not already answered reads the replies for all of them,
handing each its own by id, until its own comes; then the reading passes to
another caller still waiting. So concurrent sends through one client reach
the daemon together (and share its commits) instead of one at a time.
:meth:`Client.request` is typed by its request (``Request[R]`` -> ``R``);
the methods named after the API's methods are that, spelled out.
A subscription is a second connection on which the daemon only sends
events, each yielded as its :mod:`onionpost.api` record.

Sends are made safe to repeat: ``send_text`` and ``send_file`` go out under
a message id the client chose (16 random bytes), and the daemon treats the
same id again as the same message. When the connection breaks before the
answer comes (the daemon restarted, the socket was cut), the client
connects again and sends the same request, until the daemon answers or the
caller's deadline passes (at most ``MAX_RESENDS`` times; then
:class:`~onionpost.errors.NotConfirmedError`, with the id). A send that
finds no daemon at its first try raises
:class:`~onionpost.errors.DaemonNotRunningError` at once: nothing was
queued. Other requests are not repeated; but the call after a broken
connection (a restart) connects again first, so one client outlives a
daemon restart. With a deadline of your own on a send, choose its id
(:func:`new_message_id`): a send cut off by the deadline may still have
been queued, and the id is how to ask.

No call takes a timeout (STYLE 9): wrap it in ``trio.move_on_after`` /
``trio.fail_after``. A call cancelled while waiting for its reply leaves the
connection usable (the late reply is skipped by its id); a call cancelled
while writing its request leaves a partial line behind: the calls waiting on
that connection fail with :class:`~onionpost.errors.TransportError`, and the
next call connects again.

Errors: :class:`~onionpost.errors.DaemonNotRunningError` when nothing
listens on the socket; :class:`~onionpost.errors.ApiError` (with ``.code``)
when the daemon refuses a request; :class:`~onionpost.errors.TransportError`
when the connection breaks or the daemon sends something malformed.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import trio

from onionpost import api
from onionpost._localapi import (
    MAX_REQUEST_LINE,
    MAX_RESENDS,
    MAX_RESPONSE_LINE,
    RESEND_BACKOFF,
    ErrorCode,
    LineReader,
    encode_line,
)
from onionpost.client._types import _malformed
from onionpost.errors import (
    ApiError,
    ConfigError,
    DaemonNotRunningError,
    FramingError,
    NotConfirmedError,
    TransportError,
)
from onionpost.home import Paths, default_home

__all__ = ["Client", "Subscription", "open_client"]

# connect() errors that mean "no daemon here" rather than "something is wrong".
_NOT_RUNNING = (FileNotFoundError, ConnectionRefusedError, NotADirectoryError)

R = TypeVar("R")
Q = TypeVar("Q", bound=api.Request[Any])


# Requests sent again under their id while the connection breaks.
_SENDS = (
    api.SendText,
    api.SendFile,
    api.ListSendText,
    api.ListSendFile,
    api.GroupSendText,
    api.GroupSendFile,
)


def _check_id(message_id: str) -> None:
    """A send's own id is as the daemon answers it and as every event names it:
    32 lowercase hex digits (an id given in capitals would match none)."""
    if len(message_id) != 32 or message_id.strip("0123456789abcdef"):
        raise ConfigError(
            f"a message id is 32 lowercase hex digits (new_message_id()), not {message_id!r}"
        )


def _with_message_id(request: Q) -> Q:
    """A send under an id chosen here, so that it can be sent again; an id
    the caller chose is checked first."""
    if isinstance(request, _SENDS) and request.id is not None:
        _check_id(request.id)
    if isinstance(request, api.SendTexts):
        for item in request.texts:
            if item.id is not None:
                _check_id(item.id)
    if isinstance(request, _SENDS) and request.id is None:
        return replace(request, id=api.new_message_id())
    if isinstance(request, api.SendTexts) and any(t.id is None for t in request.texts):
        texts = tuple(t if t.id else replace(t, id=api.new_message_id()) for t in request.texts)
        return replace(request, texts=texts)
    return request


def _resend_delay(attempt: int) -> float:
    first, most = RESEND_BACKOFF
    return float(min(most, first * 2 ** (attempt - 1)))


def _check_owner(path: Path) -> None:
    """A daemon of another user answers us nothing (it checks SO_PEERCRED and
    closes): say so plainly instead of "lost the connection"."""
    home = path.parent.parent
    try:
        owner = os.stat(path).st_uid
    except PermissionError:
        owner = None
    except OSError:
        return  # no socket: connect() says the daemon is not running
    if owner != os.getuid():
        raise TransportError(f"the daemon of {home} belongs to another user", reason="refused")


def _serving_command(home: Path) -> str:
    """What runs this home: a registrar's and a mailbox's are served by their
    own command (which serves the same local API), an endpoint's by the daemon."""
    paths = Paths.for_home(home)
    if paths.registrar.is_dir():
        return "registrar serve"
    if paths.mailbox_store.exists():
        return "mailbox serve"
    return "daemon"


async def _connect(path: Path) -> trio.SocketStream:
    _check_owner(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.connect(os.fspath(path))
    except _NOT_RUNNING as exc:
        sock.close()
        home = path.parent.parent
        if not Paths.for_home(home).secrets.exists():
            # A home never made (a --home forgotten or mistyped): starting a
            # daemon there would only say so next.
            raise DaemonNotRunningError(
                f"no endpoint in {home}: run 'onionpost init' first (or give its --home)"
            ) from exc
        raise DaemonNotRunningError(
            f"the daemon is not running for {home} (start it with "
            f"'onionpost {_serving_command(home)} --home {home}')"
        ) from exc
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise TransportError(
            f"cannot connect to the daemon at {path}: {reason}", reason="refused"
        ) from exc
    except BaseException:
        sock.close()
        raise
    try:
        # A listener whose backlog is full makes a non-blocking AF_UNIX connect
        # fail with EAGAIN, which trio reports as connected: check.
        sock.getpeername()
    except OSError as exc:
        sock.close()
        raise TransportError(
            f"the daemon at {path} is not accepting connections (busy or stuck)",
            reason="refused",
        ) from exc
    return trio.SocketStream(sock)


def _absolute(path: Path | str) -> str:
    # The daemon's working directory is not ours: paths go out absolute. Only
    # getcwd() touches the system, which does not block.
    return os.path.abspath(path)


class _Connection:
    """One socket to the daemon, framed in JSON lines."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = LineReader(stream, MAX_RESPONSE_LINE)
        self.reading = False  # a caller is reading replies from it

    async def send(self, obj: Any) -> None:
        try:
            await self.stream.send_all(encode_line(obj))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportError("lost the connection to the daemon") from exc

    async def receive(self) -> dict[str, Any] | None:
        """The next JSON object from the daemon; None when it closed the connection."""
        try:
            line = await self.reader.next_line()
        except FramingError as exc:
            raise TransportError(f"the daemon sent a malformed reply ({exc})") from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportError("lost the connection to the daemon") from exc
        if line is None:
            return None
        try:
            message = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise TransportError("the daemon sent a malformed reply") from exc
        if not isinstance(message, dict):
            raise TransportError("the daemon sent a malformed reply")
        return message


class _Waiter:
    """One call waiting for its reply on ``connection``."""

    __slots__ = ("connection", "error", "line", "reply", "wake")

    def __init__(self, connection: _Connection, line: bytes) -> None:
        self.connection = connection
        self.line: bytes | None = line  # the request, until it is written
        self.reply: dict[str, Any] | None = None
        self.error: TransportError | None = None  # the connection failed under it
        self.wake = trio.Event()


def _raise_error(reply: dict[str, Any]) -> None:
    error = reply["error"]
    if (
        not isinstance(error, dict)
        or not isinstance(error.get("code"), str)
        or not isinstance(error.get("message"), str)
    ):
        raise TransportError("the daemon sent a malformed error")
    raise ApiError(error["message"], code=error["code"])


class Client:
    """A connection to the daemon's local API; get one from :func:`open_client`."""

    def __init__(self, connection: _Connection, socket_path: Path) -> None:
        self._connection = connection
        self._socket_path = socket_path
        self._send_lock = trio.Lock()  # one write at a time, of whole lines
        self._outbox: list[_Waiter] = []  # calls whose request line is not written yet
        self._next_id = 0
        self._broken: str | None = None
        self._waiting: dict[int, _Waiter] = {}  # by request id

    @property
    def socket_path(self) -> Path:
        return self._socket_path

    async def _call(self, request: api.Request[Any]) -> Any:
        """The ``result`` of one request's reply, as JSON. A broken connection
        is replaced by a new one first (nothing of this request was sent on
        it): a client outlives a daemon restart."""
        params = api.encode(request)
        if self._broken is not None:
            async with self._send_lock:
                if self._broken is not None:
                    await self._reconnect()
        self._next_id += 1
        request_id = self._next_id
        line = encode_line({"id": request_id, "method": request.METHOD, "params": params})
        if len(line) > MAX_REQUEST_LINE:
            raise ConfigError(f"request too large for the local API ({len(line)} bytes)")
        waiter = self._waiting[request_id] = _Waiter(self._connection, line)
        try:
            # Queued, then written by whoever takes the lock first: taking a free
            # lock lets the other callers ready now queue theirs, and one write
            # carries them all (so the daemon reads them together).
            self._outbox.append(waiter)
            async with self._send_lock:
                if waiter.line is not None:
                    await self._flush()
            reply = await self._reply(waiter)
        finally:
            del self._waiting[request_id]
            if waiter.line is not None:  # cancelled before it was written: never is
                self._outbox.remove(waiter)
        if "error" in reply:
            _raise_error(reply)
        if "result" not in reply:
            raise TransportError("the daemon sent a malformed reply")
        return reply["result"]

    async def _flush(self) -> None:
        """Write every queued request line in one write (the send lock held)."""
        queued, self._outbox = self._outbox, []
        connection = self._connection
        lines: list[bytes] = []
        written: list[_Waiter] = []
        for waiter in queued:
            assert waiter.line is not None
            if waiter.connection is connection and waiter.error is None:
                lines.append(waiter.line)
                written.append(waiter)
            elif waiter.error is None:
                waiter.error = TransportError("lost the connection to the daemon")
                waiter.wake.set()
            waiter.line = None
        if self._broken is not None:
            # Broken since these were queued: they go nowhere.
            for waiter in written:
                waiter.error = TransportError(self._broken)
                waiter.wake.set()
            return
        await self._send_request(connection, b"".join(lines), written)

    def _waiters(self, connection: _Connection) -> list[_Waiter]:
        return [w for w in self._waiting.values() if w.connection is connection]

    async def _reconnect(self) -> None:
        connection = _Connection(await _connect(self._socket_path))
        old, self._connection, self._broken = self._connection, connection, None
        # Calls still waiting on the old connection will hear nothing more there.
        for waiter in self._waiters(old):
            if waiter.reply is None and waiter.error is None:
                waiter.error = TransportError("lost the connection to the daemon")
                waiter.wake.set()
        await trio.aclose_forcefully(old.stream)

    async def _call_until_answered(
        self,
        request: api.SendText
        | api.SendFile
        | api.SendTexts
        | api.ListSendText
        | api.ListSendFile
        | api.GroupSendText
        | api.GroupSendFile,
    ) -> Any:
        """A send, sent again under its id while no answer comes (module docstring)."""
        if isinstance(request, api.SendTexts):
            first = request.texts[0].id if request.texts else "none"
        else:
            first = request.id
        assert first is not None
        failure: Exception | None = None
        for attempt in range(MAX_RESENDS + 1):
            if attempt:
                await trio.sleep(_resend_delay(attempt))
            try:
                return await self._call(request)
            except DaemonNotRunningError as exc:
                if failure is None:
                    raise  # never reached a daemon: nothing was queued
                failure = exc
            except TransportError as exc:
                failure = exc
            except ApiError as exc:
                if exc.code != ErrorCode.BUSY:
                    raise
                failure = exc
        raise NotConfirmedError(
            f"the daemon did not answer the send of {first} ({failure}); "
            "it may have been queued: ask for it by its id",
            message_id=first,
        ) from failure

    async def _reply(self, waiter: _Waiter) -> dict[str, Any]:
        """The reply for ``waiter``: read by itself when nobody else is
        reading its connection, else handed to it by the caller who is."""
        while True:
            if waiter.reply is not None:
                return waiter.reply
            if waiter.error is not None:
                raise TransportError(str(waiter.error), reason=waiter.error.reason)
            if not waiter.connection.reading:
                await self._read_for(waiter)
                continue
            waiter.wake = trio.Event()
            await waiter.wake.wait()

    async def _read_for(self, waiter: _Waiter) -> None:
        """Read replies from ``waiter``'s connection, each to its caller, until
        ``waiter``'s comes; then pass the reading on to a caller still waiting."""
        connection = waiter.connection
        connection.reading = True
        try:
            while waiter.reply is None:
                try:
                    reply = await connection.receive()
                except TransportError as exc:
                    self._fail(connection, exc)
                    raise
                if reply is None:
                    ended = TransportError("the daemon closed the connection", reason="ended")
                    self._fail(connection, ended)
                    raise ended
                reply_id = reply.get("id")
                if reply_id is None and "error" in reply:
                    # About the connection, not a request (e.g. "busy"): every
                    # call on it gets it, and the daemon closes it.
                    if connection is self._connection:
                        self._broken = "the daemon refused this connection"
                    for other in self._waiters(connection):
                        other.reply = reply
                        other.wake.set()
                    continue
                target = self._waiting.get(reply_id) if type(reply_id) is int else None
                if target is not None and target.connection is connection:
                    target.reply = reply
                    target.wake.set()
                # Otherwise the late reply of a cancelled call: skip it.
        finally:
            connection.reading = False
            for other in self._waiters(connection):
                if other is not waiter and other.reply is None and other.error is None:
                    other.wake.set()  # it reads next
                    break

    def _fail(self, connection: _Connection, exc: TransportError) -> None:
        """``connection`` broke: every call waiting on it is told."""
        if connection is self._connection:
            self._broken = str(exc)
        for other in self._waiters(connection):
            if other.reply is None and other.error is None:
                other.error = exc
                other.wake.set()

    async def _send_request(
        self, connection: _Connection, lines: bytes, waiters: list[_Waiter]
    ) -> None:
        try:
            await connection.stream.send_all(lines)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # The daemon may have said why before it closed (e.g. "busy").
            if not connection.reading:
                await self._raise_parting_error(connection)
            error = TransportError("lost the connection to the daemon")
            self._fail(connection, error)
            raise error from exc
        except BaseException:
            # Cancelled mid-write: part of a line may be on the wire, and the
            # daemon would read the next request as its end. The calls whose
            # lines were in this write are not answered.
            self._broken = "a request to the daemon was interrupted (the next call connects again)"
            for waiter in waiters:
                if waiter.reply is None and waiter.error is None:
                    waiter.error = TransportError(self._broken)
                    waiter.wake.set()
            raise

    async def _raise_parting_error(self, connection: _Connection) -> None:
        try:
            reply = await connection.receive()
        except TransportError:
            return
        if reply is not None and reply.get("id") is None and "error" in reply:
            if connection is self._connection:
                self._broken = "the daemon refused this connection"
            _raise_error(reply)

    async def aclose(self) -> None:
        await self._connection.stream.aclose()

    async def request(self, request: api.Request[R]) -> R:
        """Send one request of :mod:`onionpost.api`; its result, decoded strictly.

        A ``send_text``/``send_file`` without an id gets one here, and is sent
        again under it when the connection breaks before its answer (see the
        module docstring); the result's ``id`` is that id.
        """
        request = _with_message_id(request)
        if isinstance(request, (*_SENDS, api.SendTexts)):
            result = await self._call_until_answered(request)
        else:
            result = await self._call(request)
        return api.decode_result(request, result, error=_malformed)

    # -- The API, one method per request, named as on the wire (local-api.md) ----

    async def whoami(self) -> api.Identity:
        return await self.request(api.Whoami())

    async def status(self) -> api.Status:
        return await self.request(api.GetStatus())

    async def contact_add(
        self, card: str, name: str | None = None, endorsement: str | None = None
    ) -> api.ContactRef:
        return await self.request(api.ContactAdd(card, name, endorsement))

    async def contact_list(self) -> tuple[api.Contact, ...]:
        return await self.request(api.ContactList())

    async def contact_show(self, name: str) -> api.ContactDetail:
        """Everything about one contact (by name, or by address)."""
        return await self.request(api.ContactShow(name))

    async def contact_remove(self, name: str) -> api.ContactRemoved:
        """Remove contact ``name``; ``groups`` names the groups it is still a
        member of with us (it stays reachable as their member)."""
        return await self.request(api.ContactRemove(name))

    async def contact_rename(self, name: str, new_name: str) -> api.ContactRef:
        """Call ``name`` ``new_name`` from now on; its history, outbox,
        verification and lists stay (its messages show the new name)."""
        return await self.request(api.ContactRename(name, new_name))

    async def contact_verify(self, name: str, *, confirm: str | None = None) -> api.SafetyNumber:
        """The safety number with ``name``; with ``confirm`` (the number the
        contact read out), mark the contact verified if it matches, else
        :class:`~onionpost.errors.ConfigError`."""
        return await self.request(api.ContactVerify(name, confirm))

    async def trust_add(self, anchor: str, safety_number: str) -> api.TrustAnchor:
        return await self.request(api.TrustAdd(anchor, safety_number))

    async def trust_list(self) -> tuple[api.TrustAnchor, ...]:
        return await self.request(api.TrustList())

    async def trust_remove(self, anchor: str) -> api.TrustAnchor:
        return await self.request(api.TrustRemove(anchor))

    async def contact_require_endorsement(self, name: str, required: bool | None) -> api.ContactRef:
        return await self.request(api.ContactRequireEndorsement(name, required))

    async def trust_endorsement_install(self, proof: bytes) -> api.Endorsement:
        return await self.request(
            api.TrustEndorsementInstall(base64.b64encode(proof).decode("ascii"))
        )

    async def trust_rotate(self, card: str, proof: bytes) -> api.RotationAnnounced:
        return await self.request(api.TrustRotate(card, base64.b64encode(proof).decode("ascii")))

    async def trust_revocations_import(self, bundle: bytes) -> api.RevocationsImported:
        return await self.request(
            api.TrustRevocationsImport(base64.b64encode(bundle).decode("ascii"))
        )

    async def contact_set_max_label(self, name: str, labels: Iterable[str]) -> api.ContactLabels:
        """The highest handling labels (one per scheme) we send ``name``; none: no limit."""
        return await self.request(api.ContactSetMaxLabel(name, tuple(labels)))

    async def send_text(
        self,
        contact: str,
        body: str,
        *,
        content_type: str = "text/plain",
        id: str | None = None,
        label: str | None = None,
    ) -> api.Queued:
        """Returns once the daemon has durably queued the message, under ``id``
        (:func:`onionpost.api.new_message_id`; by default a new one), labelled
        ``label`` (by default the endpoint's default label). A label the
        contact does not accept is :class:`ApiError` with code ``label``."""
        return await self.request(api.SendText(contact, body, content_type, id, label))

    async def send_texts(
        self, contact: str, texts: Sequence[str | api.TextItem], *, label: str | None = None
    ) -> tuple[api.Queued, ...]:
        """Many texts in one call (at most :data:`onionpost.api.MAX_TEXTS`):
        returns once the daemon has durably queued them all, in order, each
        under its own id (chosen here when the item has none), all labelled ``label``."""
        items = tuple(api.TextItem(t) if isinstance(t, str) else t for t in texts)
        return await self.request(api.SendTexts(contact, items, label))

    async def send_file(
        self, contact: str, path: Path | str, *, id: str | None = None, label: str | None = None
    ) -> api.Queued:
        """Returns once the daemon has copied the file into its store, queued."""
        return await self.request(api.SendFile(contact, _absolute(path), id, label))

    async def forward(
        self, id: str, to: str, *, contact: str | None = None, label: str | None = None
    ) -> api.Queued:
        """Send stored message ``id`` on to ``to`` under a new id, its label kept
        or raised to ``label`` (never lowered; TLP:RED stays in its audience)."""
        return await self.request(api.Forward(id, to, contact, label))

    async def list_create(self, name: str, members: Sequence[str] = ()) -> api.DistributionList:
        return await self.request(api.ListCreate(name, tuple(members)))

    async def list_add(self, name: str, members: Sequence[str]) -> api.DistributionList:
        return await self.request(api.ListAdd(name, tuple(members)))

    async def list_remove(self, name: str, members: Sequence[str]) -> api.DistributionList:
        return await self.request(api.ListRemove(name, tuple(members)))

    async def list_delete(self, name: str) -> api.DistributionList:
        return await self.request(api.ListDelete(name))

    async def list_show(self, name: str) -> api.DistributionList:
        """The list, its members and its latest sends with each copy's state."""
        return await self.request(api.ListShow(name))

    async def list_list(self) -> tuple[api.DistributionList, ...]:
        return await self.request(api.ListList())

    async def list_send_text(
        self,
        name: str,
        body: str,
        *,
        content_type: str = "text/plain",
        id: str | None = None,
        label: str | None = None,
    ) -> api.ListSent:
        """A copy of the text to each member of list ``name``, all durably
        queued when this returns, under the send's ``id`` (sent again under
        it while the connection breaks: one send at most), each labelled
        ``label`` (checked for every member first)."""
        return await self.request(api.ListSendText(name, body, content_type, id, label))

    async def list_send_file(
        self, name: str, path: Path | str, *, id: str | None = None, label: str | None = None
    ) -> api.ListSent:
        """A copy of the file to each member of list ``name``."""
        return await self.request(api.ListSendFile(name, _absolute(path), id, label))

    async def group_create(self, name: str, members: Sequence[str] = ()) -> api.Group:
        """A new team channel with us as its first admin and these contacts in it."""
        return await self.request(api.GroupCreate(name, tuple(members)))

    async def group_add(self, group: str, members: Sequence[str]) -> api.Group:
        return await self.request(api.GroupAdd(group, tuple(members)))

    async def group_remove(self, group: str, members: Sequence[str]) -> api.Group:
        return await self.request(api.GroupRemove(group, tuple(members)))

    async def group_leave(self, group: str) -> api.Group:
        return await self.request(api.GroupLeave(group))

    async def group_rename(self, group: str, name: str) -> api.Group:
        return await self.request(api.GroupRename(group, name))

    async def group_promote(self, group: str, member: str) -> api.Group:
        return await self.request(api.GroupPromote(group, member))

    async def group_demote(self, group: str, member: str) -> api.Group:
        return await self.request(api.GroupDemote(group, member))

    async def group_show(self, group: str) -> api.Group:
        """The group, its members and its latest sends with each copy's state."""
        return await self.request(api.GroupShow(group))

    async def group_list(self) -> tuple[api.Group, ...]:
        return await self.request(api.GroupList())

    async def group_send_text(
        self,
        group: str,
        body: str,
        *,
        content_type: str = "text/plain",
        id: str | None = None,
        label: str | None = None,
    ) -> api.GroupSent:
        """A copy of the text to each other member of ``group`` at its present
        head, all durably queued when this returns, under the send's ``id``
        (sent again under it while the connection breaks: one send at most)."""
        return await self.request(api.GroupSendText(group, body, content_type, id, label))

    async def group_send_file(
        self, group: str, path: Path | str, *, id: str | None = None, label: str | None = None
    ) -> api.GroupSent:
        """A copy of the file to each other member of ``group`` at its present
        head, each encrypted and queued in one commit when this returns, under
        the send's ``id`` (sent again under it while the connection breaks)."""
        return await self.request(api.GroupSendFile(group, _absolute(path), id, label))

    async def inbox(
        self, after: int = 0, limit: int = 100, *, unread: bool = False
    ) -> tuple[api.Message, ...]:
        """Incoming messages with ``seq`` greater than ``after``, oldest first."""
        return await self.request(api.Inbox(after, limit, unread))

    async def outbox(self, contact: str | None = None, limit: int = 100) -> tuple[api.Message, ...]:
        """Outgoing messages and files still waiting to be delivered, oldest first."""
        return await self.request(api.Outbox(contact, limit))

    async def message(self, id: str, contact: str | None = None) -> api.Message:
        return await self.request(api.GetMessage(id, contact))

    async def mark_read(self, ids: Iterable[str], contact: str | None = None) -> int:
        if isinstance(ids, str):
            raise ConfigError("mark_read takes a list of message ids, not one string")
        return (await self.request(api.MarkRead(tuple(ids), contact))).marked

    async def export_file(
        self, id: str, dest: Path | str, contact: str | None = None
    ) -> api.Exported:
        """Decrypt a received file to ``dest`` (made absolute here)."""
        return await self.request(api.ExportFile(id, _absolute(dest), contact))

    async def log_show(self, start: int = 0, limit: int = 100) -> api.LogEntries:
        """Entries of the evidence log from index ``start``."""
        return await self.request(api.LogShow(start, limit))

    async def log_verify(self) -> api.LogReport:
        """The whole evidence log re-read and checked against its checkpoints."""
        return await self.request(api.LogVerify())

    async def evidence_export(
        self,
        dest: Path | str,
        *,
        contact: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        ids: Iterable[str] = (),
        group: str | None = None,
    ) -> api.EvidenceExported:
        """Write an evidence bundle of the selected messages to ``dest`` (a new file)."""
        return await self.request(
            api.EvidenceExport(_absolute(dest), contact, since_ms, until_ms, tuple(ids), group)
        )

    async def retry(self, contact: str | None = None) -> int:
        """Retry delivery now, to one contact or all; returns how many were kicked."""
        return (await self.request(api.Retry(contact))).contacts

    async def trust_enrol(self, code: str, *, again: bool = False) -> api.Endorsement:
        """An endpoint only: enrol with the agency's registrar of ``code``.
        One whose endorsement is in force is refused (``ConfigError``), unless
        ``again``: the code's name and unit then replace its own."""
        return await self.request(api.TrustEnrol(code, again))

    async def registrar_code(
        self,
        endpoint: str,
        unit: str = "",
        expires: int = 3600,
        *,
        replaces: str = "",
        from_revoked: bool = False,
    ) -> api.EnrolmentCode:
        """A registrar only: a one-time enrolment code for one endpoint; with
        ``replaces``, one that moves the endpoint enrolled at that address."""
        return await self.request(
            api.RegistrarCode(endpoint, unit, expires, replaces, from_revoked)
        )

    async def registrar_revoke(
        self, address: str, reason: str = "", *, force: bool = False
    ) -> api.RegistrarState:
        """A registrar only: revoke ``address`` in the next list, logged (one it
        never enrolled only with ``force``)."""
        return await self.request(api.RegistrarRevoke(address, reason, force))

    async def registrar_export_list(self) -> api.RevocationListExport:
        """A registrar only: its latest revocation list as a file (base64 in
        ``bundle``) for ``trust_revocations_import`` on other endpoints."""
        return await self.request(api.RegistrarExportList())

    async def registrar_delegation(self, delegation: bytes) -> api.RegistrarState:
        """A registrar only: take the root's new delegation (``trust delegate``)."""
        return await self.request(
            api.RegistrarDelegation(base64.b64encode(delegation).decode("ascii"))
        )

    async def registrar_list(self) -> api.RegistrarState:
        """A registrar only: its endpoints, its list and its log."""
        return await self.request(api.RegistrarList())

    async def mailbox_code(self, expires: int = 86_400) -> api.SetupCode:
        """A mailbox only: a new one-time setup code, valid ``expires`` seconds."""
        return await self.request(api.MailboxCode(expires))

    async def mailbox_pair(self, code: str) -> api.MailboxRef:
        """An endpoint only: pair with the mailbox of the setup code ``code``."""
        return await self.request(api.MailboxPair(code))

    async def mailbox_status(self) -> api.MailboxStatus:
        """An endpoint's mailbox as last seen, or a mailbox's owners (``role``)."""
        return await self.request(api.GetMailboxStatus())

    async def mailbox_wipe(self, owner: str | None = None) -> api.Wiped:
        """Delete what the mailbox holds: an endpoint's own space (``owner``
        None), or on a mailbox one owner's space or every owner's."""
        return await self.request(api.MailboxWipe(owner))

    @asynccontextmanager
    async def subscribe(self, topics: Iterable[api.Topic]) -> AsyncIterator[Subscription]:
        """Events of ``topics`` ("message", "state", "peer", "tor", "group") on a new connection.

        ``async for event in subscription`` yields each event's record
        (:data:`onionpost.api.Event`: a :class:`~onionpost.api.Message`,
        :class:`~onionpost.api.StateChange`, :class:`~onionpost.api.PeerChange`
        or :class:`~onionpost.api.TorStatus`, by topic); it raises
        :class:`~onionpost.errors.TransportError` if the daemon ends the
        subscription (it stopped, or this reader fell too far behind).
        """
        connection = _Connection(await _connect(self._socket_path))
        async with connection.stream:
            request = api.Subscribe(tuple(topics))
            await connection.send(
                {"id": 1, "method": request.METHOD, "params": api.encode(request)}
            )
            reply = await connection.receive()
            if reply is None:
                raise TransportError("the daemon closed the connection", reason="ended")
            if "error" in reply:
                _raise_error(reply)
            if "result" not in reply:
                raise TransportError("the daemon sent a malformed reply")
            yield Subscription(connection)

    async def settled(self, id: str, contact: str | None = None) -> api.Message:
        """Wait until the message ``id`` we sent is settled, delivered (or
        read) or failed (expired, refused), and return its record then.

        What ``onionpost send --wait`` does: the state events are followed
        from before the message is asked for, so no change falls between.
        No deadline of its own (a contact may be away for days): wrap it in
        ``trio.move_on_after``. :class:`~onionpost.errors.ApiError`
        ``not-found`` for an id nothing here has."""
        async with self.subscribe(["state"]) as events:
            current = await self.message(id, contact)
            if current.state.delivered or current.state.failed:
                return current
            async for event in events:
                if (
                    isinstance(event, api.StateChange)
                    and event.id == current.id
                    and (event.state.delivered or event.state.failed)
                ):
                    return await self.message(id, contact)
        raise TransportError("the daemon ended the subscription")  # pragma: no cover

    async def messages(self, after: int | None = None) -> AsyncGenerator[api.Message, None]:
        """Incoming messages as they arrive, forever.

        With ``after`` (a ``seq``; 0 for the whole inbox), first every message
        already in the inbox after it, then the new ones as they arrive, each
        exactly once and in order: the subscription is opened before the
        inbox is read, so nothing that arrives in between is missed, and what
        both deliver is given once. Close it promptly with
        ``contextlib.aclosing`` when you stop early.
        """
        async with self.subscribe(["message"]) as events:
            last = after
            if after is not None:
                while True:
                    page = await self.inbox(after=last or 0, limit=api.MAX_INBOX_LIMIT)
                    for message in page:
                        yield message
                        last = message.seq
                    if len(page) < api.MAX_INBOX_LIMIT:
                        break
            async for event in events:
                if not isinstance(event, api.Message):
                    continue
                message = event
                if last is not None and message.seq is not None and message.seq <= last:
                    continue  # already given from the inbox
                if message.seq is not None:
                    last = message.seq
                yield message


class Subscription:
    """The events of one subscription; iterate with ``async for``."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> api.Event:
        while True:
            line = await self._connection.receive()
            if line is None:
                raise TransportError(
                    "the daemon ended the subscription (it stopped, or this reader fell behind)",
                    reason="ended",
                )
            if "event" in line:
                return api.decode_event(line["event"], line.get("data"), error=_malformed)
            if line.get("id") is None and "error" in line:
                _raise_error(line)


@asynccontextmanager
async def open_client(
    home: Path | str | None = None, *, socket_path: Path | str | None = None
) -> AsyncIterator[Client]:
    """Connect to the daemon of ``home`` (default: :func:`onionpost.home.default_home`).

    ``socket_path`` overrides the home's ``run/control.sock``. Raises
    :class:`~onionpost.errors.DaemonNotRunningError` if no daemon listens.
    The connection is closed on the way out; exceptions from the body pass
    through unchanged.
    """
    if socket_path is None:
        path = Paths.for_home(Path(home) if home is not None else default_home()).socket
    else:
        path = Path(socket_path)
    client = Client(_Connection(await _connect(path)), path)
    try:
        yield client
    finally:
        await client.aclose()
