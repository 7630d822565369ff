"""The local API server: JSON lines on a unix socket, for this user only.

Theory of operation
-------------------
::

    serve_api(backend, socket_path)
    └── nursery
        └── connection (one per accepted socket, at most MAX_CONNECTIONS)
            ├── peer check         SO_PEERCRED uid must be ours, else close at once
            ├── reader             bounded lines -> at most MAX_IN_FLIGHT requests
            ├── request ...        validate, call the handler of its type, write one reply
            └── subscription       backend channel -> event lines (at most one)

Who may call is decided twice: the socket is 0600 in a 0700 directory we
own, and every accepted connection's peer credentials must carry our uid.
This module only frames, checks peers, validates parameters, dispatches by
request type to the backend's handlers (``_backend.py``; a type the backend
does not serve is answered ``config``) and maps
:class:`~onionpost.errors.OnionpostError` subclasses to the stable error codes
of ``protocol-spec/local-api.md``; it knows nothing of tor or the store.
Nothing a client sends can stop the server: every failure of one request
becomes an error reply, and every failure of one connection ends only it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import trio

from onionpost import api
from onionpost._localapi import (
    MAX_CONNECTIONS,
    MAX_IN_FLIGHT,
    MAX_REQUEST_LINE,
    SUBSCRIBER_STALL_TIMEOUT,
    ErrorCode,
    LineReader,
    encode_line,
)
from onionpost.errors import (
    CardError,
    ConfigError,
    FramingError,
    GroupError,
    LabelError,
    LocalProtocolError,
    NotFoundError,
    OnionpostError,
    RemoteProtocolError,
    StoreError,
    TorError,
    TransportError,
    UnknownContactError,
)
from onionpost.host._backend import JSON, Backend, Handler, Handlers

__all__ = ["serve_api"]

log = logging.getLogger("onionpost.daemon.api")

# sun_path is 108 bytes on Linux, one of them the terminating NUL.
_MAX_SOCKET_PATH: Final = 107
_LISTEN_BACKLOG: Final = 16
_PEERCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid
# accept() failures that mean "out of resources, try again shortly" (as trio's
# serve_listeners treats them).
_ACCEPT_RETRY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_RETRY_SLEEP: Final = 0.1

# An exception takes the code of the first class of its MRO found here, so a
# subclass not listed gets its parent's code.
_ERROR_CODES: Final[Mapping[type[OnionpostError], ErrorCode]] = {
    UnknownContactError: ErrorCode.UNKNOWN_CONTACT,
    CardError: ErrorCode.BAD_CARD,
    NotFoundError: ErrorCode.NOT_FOUND,
    LabelError: ErrorCode.LABEL,
    ConfigError: ErrorCode.CONFIG,
    StoreError: ErrorCode.STORE,
    TorError: ErrorCode.TOR,
    RemoteProtocolError: ErrorCode.PROTOCOL,
    LocalProtocolError: ErrorCode.PROTOCOL,
    TransportError: ErrorCode.TRANSPORT,
    GroupError: ErrorCode.GROUP,
}


def error_code(exc: OnionpostError) -> ErrorCode:
    for cls in type(exc).__mro__:
        code = _ERROR_CODES.get(cls)
        if code is not None:
            return code
    return ErrorCode.INTERNAL


# -- Requests -------------------------------------------------------------------------


class _BadRequest(Exception):
    """A request this server will not pass to the backend (code ``bad-request``)."""

    def __init__(self, message: str, request_id: int | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


def _parse_request(line: bytes) -> tuple[int | str, api.Request[Any]]:
    """``(id, request)``, its parameters checked against :mod:`onionpost.api`;
    raises _BadRequest, with the id once it is known."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and over-long integers.
        raise _BadRequest("not a JSON object") from exc
    if not isinstance(request, dict):
        raise _BadRequest("not a JSON object")
    request_id = request.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        raise _BadRequest("'id' must be an integer or a string")
    try:
        parsed = api.decode_request(request.get("method"), request.get("params"), error=_BadRequest)
    except _BadRequest as exc:
        exc.request_id = request_id
        raise
    return request_id, parsed


def _error(request_id: int | str | None, code: ErrorCode, message: str) -> JSON:
    return {"id": request_id, "error": {"code": code.value, "message": message}}


# -- One connection ------------------------------------------------------------------


class _Connection:
    def __init__(
        self, backend: Backend, handlers: Handlers, stream: trio.SocketStream, peer: str
    ) -> None:
        self._backend = backend
        self._handlers = handlers
        self._stream = stream
        self._peer = peer
        self._send_lock = trio.Lock()
        self._outgoing: list[bytes] = []  # whole lines not written yet
        self._in_flight = trio.Semaphore(MAX_IN_FLIGHT)
        self._subscription: trio.CancelScope | None = None
        self._eof = False

    async def run(self) -> None:
        reader = LineReader(self._stream, MAX_REQUEST_LINE)
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    line = await reader.next_line()
                except FramingError as exc:
                    await self._send(_error(None, ErrorCode.BAD_REQUEST, str(exc)))
                    continue
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if line is None:
                    break
                if not line.strip():
                    continue
                # Back-pressure: stop reading until a request slot is free
                # (without a scheduling pass when one is: next_line checkpoints).
                try:
                    self._in_flight.acquire_nowait()
                except trio.WouldBlock:
                    await self._in_flight.acquire()
                nursery.start_soon(self._request, line, nursery)
            # The client is gone or done sending: its subscription ends, and the
            # requests already running finish (their replies may go nowhere).
            self._eof = True
            if self._subscription is not None:
                self._subscription.cancel()

    async def _request(self, line: bytes, nursery: trio.Nursery) -> None:
        # The slot is held until the reply is written, so a client that sends
        # but never reads holds at most MAX_IN_FLIGHT tasks.
        try:
            reply = await self._answer(line, nursery)
            if reply is not None:
                await self._send_bytes(reply)
        finally:
            self._in_flight.release()

    async def _answer(self, line: bytes, nursery: trio.Nursery) -> bytes | None:
        """The reply line to one request (None once a subscription has replied itself)."""
        request_id: int | str | None = None
        try:
            request_id, request = _parse_request(line)
            if isinstance(request, api.Subscribe):
                await self._subscribe(request_id, request, nursery)
                return None
            result = await self._handler(request)(request)
            return encode_line({"id": request_id, "result": api.encode(result)})
        except _BadRequest as exc:
            return encode_line(_error(exc.request_id, ErrorCode.BAD_REQUEST, exc.message))
        except OnionpostError as exc:
            code = error_code(exc)
            if code is ErrorCode.INTERNAL:
                log.exception("event=api_error peer=%s", self._peer)
            return encode_line(_error(request_id, code, str(exc)))
        except Exception:
            # A backend bug (or a result JSON cannot carry): the log has the
            # traceback, the client only a code.
            log.exception("event=api_internal_error peer=%s", self._peer)
            return encode_line(
                _error(request_id, ErrorCode.INTERNAL, "internal error (see the daemon's log)")
            )

    def _handler(self, request: api.Request[Any]) -> Handler:
        handler = self._handlers.get(type(request))
        if handler is None:
            raise ConfigError(f"{request.METHOD}: {self._backend.unserved}")
        return handler

    async def _subscribe(
        self, request_id: int | str | None, request: api.Subscribe, nursery: trio.Nursery
    ) -> None:
        if self._subscription is not None:
            raise _BadRequest("this connection is already subscribed", request_id)
        topics = tuple(sorted(set(request.topics)))
        channel = self._backend.subscribe(topics)
        # Claim the slot before the first checkpoint, so a second subscribe
        # racing this one is refused; a client already gone gets no forwarder.
        self._subscription = trio.CancelScope()
        if self._eof:
            self._subscription.cancel()
        # The reply goes out before any event, so the client can tell them apart.
        await self._send({"id": request_id, "result": api.encode(api.Subscribed(topics))})
        nursery.start_soon(self._forward, channel, self._subscription)

    async def _forward(
        self, channel: trio.MemoryReceiveChannel[JSON], scope: trio.CancelScope
    ) -> None:
        with scope, channel:
            async for event in channel:
                try:
                    data = encode_line(event)
                except (TypeError, ValueError):
                    log.exception("event=api_bad_event peer=%s", self._peer)
                    continue
                with trio.move_on_after(SUBSCRIBER_STALL_TIMEOUT) as stall:
                    sent = await self._send_bytes(data)
                if stall.cancelled_caught:
                    log.warning("event=subscriber_dropped peer=%s reason=stalled", self._peer)
                    break
                if not sent:
                    return
            else:
                # The backend closed the channel: it dropped a subscriber that
                # fell behind (or it is shutting down).
                log.info("event=subscription_ended peer=%s", self._peer)
        if not scope.cancelled_caught:
            # Closing tells the client; it also wakes the reader, ending the connection.
            await self._stream.aclose()

    async def _send(self, reply: JSON) -> bool:
        return await self._send_bytes(encode_line(reply))

    async def _send_bytes(self, data: bytes) -> bool:
        """Write one line; False if the client is gone (that is not our error).

        Lines wait in a list and go out together: whoever takes the free lock
        first lets the other tasks ready now (the replies one commit released)
        add theirs, then writes them all at once, so the client reads them
        together; a line an earlier holder wrote needs nothing more.
        """
        self._outgoing.append(data)
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        try:
            if self._outgoing:
                lines = b"".join(self._outgoing)
                self._outgoing.clear()
                await self._stream.send_all(lines)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        finally:
            self._send_lock.release()
        return True


# -- The listener --------------------------------------------------------------------


def _prepare_directory(directory: Path) -> None:
    """Create the socket's directory 0700, or refuse one others could enter."""
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc.strerror}") from exc
    else:
        os.chmod(directory, 0o700)  # whatever the umask
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{directory} is not a directory")
    if info.st_uid != os.getuid():
        raise ConfigError(f"{directory} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{directory} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"run 'chmod 700 {directory}'"
        )


async def _remove_stale_socket(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"{path} exists and is not a socket")
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            await probe.connect(os.fspath(path))
        except OSError:
            # Nobody listens: left behind by a daemon that died.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
    raise ConfigError(f"another daemon is already serving {path}")


async def _listen(path: Path) -> tuple[trio.socket.SocketType, int]:
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise ConfigError(
            f"socket path {path} is too long for a unix socket ({_MAX_SOCKET_PATH} bytes at most)"
        )
    _prepare_directory(path.parent)
    await _remove_stale_socket(path)
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The 0700 directory already keeps others out between bind and chmod.
        await listener.bind(os.fspath(path))
        os.chmod(path, 0o600)
        listener.listen(_LISTEN_BACKLOG)
        inode = os.stat(path).st_ino
    except OSError as exc:
        listener.close()
        raise ConfigError(f"cannot listen on {path}: {exc.strerror}") from exc
    return listener, inode


def _peer_uid(sock: trio.socket.SocketType) -> tuple[int, int] | None:
    """``(pid, uid)`` of the connecting process, or None if the kernel will not say."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    pid, uid, _gid = _PEERCRED.unpack(raw)
    return pid, uid


def _refuse_busy(sock: trio.socket.SocketType) -> None:
    # Answer without a task or a wait: a fresh socket's buffer takes one short line.
    raw = socket.socket(fileno=sock.detach())
    with raw:
        raw.setblocking(False)
        with contextlib.suppress(OSError):
            raw.send(encode_line(_error(None, ErrorCode.BUSY, "too many local API connections")))


async def serve_api(
    backend: Backend,
    socket_path: Path,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the local API on ``socket_path`` until cancelled.

    Reports readiness once the socket is listening. Raises
    :class:`~onionpost.errors.ConfigError` if the socket's directory is open to
    other users or owned by someone else, or another daemon already serves the
    socket. The socket file is removed on the way out.
    """
    handlers = backend.handlers
    listener, inode = await _listen(socket_path)
    my_uid = os.getuid()
    connections = 0

    async def connection(sock: trio.socket.SocketType, pid: int) -> None:
        nonlocal connections
        stream = trio.SocketStream(sock)
        try:
            async with stream:
                await _Connection(backend, handlers, stream, f"pid:{pid}").run()
        finally:
            connections -= 1

    try:
        with listener:
            task_status.started()
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        sock, _ = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                            raise
                        log.warning("event=api_accept_failed error=%s", errno.errorcode[exc.errno])
                        await trio.sleep(_ACCEPT_RETRY_SLEEP)
                        continue
                    peer = _peer_uid(sock)
                    if peer is None or peer[1] != my_uid:
                        pid, uid = peer if peer is not None else (-1, -1)
                        log.warning("event=api_peer_refused pid=%d uid=%d", pid, uid)
                        sock.close()
                        continue
                    if connections >= MAX_CONNECTIONS:
                        log.warning("event=api_busy pid=%d", peer[0])
                        _refuse_busy(sock)
                        continue
                    connections += 1
                    nursery.start_soon(connection, sock, peer[0])
    finally:
        with contextlib.suppress(OSError):
            if os.stat(socket_path).st_ino == inode:  # still ours, not a successor's
                os.unlink(socket_path)
