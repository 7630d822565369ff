"""Test support: a private Tor network on 127.0.0.1, and endpoints on it.

Not used by the product. The end-to-end tests, the demo, the benchmarks and
``onionpost testnet`` share it:

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

Like the product, it reaches tor only through :mod:`onionpost.tor`, and a
daemon only as an operator does: the CLI, or :mod:`onionpost.client`.
"""
