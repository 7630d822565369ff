"""The trio transport: onionpost sessions over any trio stream.

:func:`connect` and :func:`accept` run the handshake over a stream (a
loopback TCP socket from tor, or memory streams in tests) and return a
:class:`SecureChannel`, a ``trio.abc.Channel`` of
:mod:`~onionpost.proto.messages` records. :func:`serve` accepts streams from
trio listeners, authenticates them under a deadline with a bound on
unauthenticated streams, and hands each channel to a handler.

This package is the one place where trio's stream errors become
:class:`~onionpost.errors.TransportError`.
"""

from onionpost.transport._channel import SecureChannel, accept, connect
from onionpost.transport._listener import Handler, Server, ServeStatistics, serve

__all__ = ["Handler", "SecureChannel", "ServeStatistics", "Server", "accept", "connect", "serve"]
