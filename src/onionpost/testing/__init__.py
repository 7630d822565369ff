"""Test support: a private Tor network on 127.0.0.1 and endpoints on it; the
real pipeline in memory; a double of the daemon's local API.

Not used by the product (no part of it imports this package). The tests, the
demo, the benchmarks, the fuzzers and ``onionpost testnet`` share it.

With tor, driven as an operator drives a daemon:

- :mod:`onionpost.testing.testnet`: three directory authorities, two relays
  and client tors, brought :func:`~onionpost.testing.testnet.up` in a
  directory and stopped with :func:`~onionpost.testing.testnet.down`, from
  this process or another;
- :mod:`onionpost.testing.endpoint`: an :class:`~onionpost.testing.endpoint.Endpoint`
  (a home and its ``onionpost daemon``, joined to such a network) driven
  through the CLI, and :func:`~onionpost.testing.endpoint.start_all`;
- :mod:`onionpost.testing.churn`: endpoints that go away and come back, the
  scenarios the end-to-end tests play and the benchmarks measure.
- :mod:`onionpost.testing.mailbox`: a :class:`~onionpost.testing.mailbox.Mailbox`
  (a home run by ``onionpost mailbox serve``) and what endpoints that use
  one need: pairing, their mailbox's status, message states, the whole inbox.
- :mod:`onionpost.testing.team`: a :class:`~onionpost.testing.team.Team` of
  endpoints, all each other's contacts, in a team channel: its texts and
  membership as each member's store holds them.

These reach tor only through :mod:`onionpost.tor`, and a daemon only as an
operator does: the CLI, or :mod:`onionpost.client`.

In one process, without tor (as :mod:`trio.testing` is to trio):

- :mod:`onionpost.testing.memory`: endpoints (a real store, the
  :class:`~onionpost.daemon.Daemon`'s engine and owner link, the real
  listener) and mailboxes (a :class:`~onionpost.mailbox.MailboxServer`) that
  reach each other over bounded in-memory pipes with a Tor stream's flow
  control, on real or virtual time; the hostile end of a session
  (:meth:`~onionpost.testing.memory.Network.connect_raw`,
  :func:`~onionpost.testing.memory.write_record`); a mailbox's server alone
  with peers speaking its records
  (:func:`~onionpost.testing.memory.running_mailbox`);
- :mod:`onionpost.testing.doubles`: :class:`~onionpost.testing.doubles.MemoryBackend`,
  the local API's handlers over dicts, and
  :class:`~onionpost.testing.doubles.ServerThread`, which serves it on a Unix
  socket for synchronous callers.

These are built on the public names of the parts they drive: the daemon's
``Daemon(dial=..., mailbox_dial=..., worker=...)``, the mailbox's server,
the transport, and the host's :class:`~onionpost.host.InlineWorker`.
"""

__all__ = ["churn", "doubles", "endpoint", "mailbox", "memory", "team", "testnet"]
