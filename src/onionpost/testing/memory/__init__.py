"""The real pipeline in memory: endpoints and mailboxes without tor (as
:mod:`trio.testing` is to trio).

Everything is real but tor: the stores (SQLite in a temporary home), the
Noise sessions, the daemon's delivery engine and owner link, the mailbox's
server, :func:`~onionpost.transport.serve`'s listener. Streams are bounded
in-memory pipes with a Tor stream's flow control, and the :class:`Network`
plays tor's part in dialling (a mailbox's client authorization included).
Store calls run on the event loop, so all of it runs on trio's ``MockClock``.

::

    _pipes      pipe_pair, MemoryListener: bounded streams, and what serve() accepts from
    _network    Network, Node, MailboxNode, network(), befriend, until; the hostile
                end: Network.connect_raw, write_record
    _mailbox    running_mailbox: a mailbox's server alone, and Peer/Client sessions to it

Two endpoints delivering a text::

    async with network(tmp) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        sent = await alice.send(bob, "hello")
        await until(lambda: alice.state(sent) == "delivered")

Built on the parts' public names only: :class:`onionpost.daemon.Daemon`
(``dial=``, ``mailbox_dial=``, ``worker=``), :mod:`onionpost.mailbox`,
:mod:`onionpost.transport` and :mod:`onionpost.host`. One exception, said
where it is: :func:`write_record` reaches into a channel's session to
encrypt bytes that no public call would.
"""

from __future__ import annotations

from onionpost.testing.memory._mailbox import (
    KEY,
    Client,
    Mailbox,
    Peer,
    envelope_bytes,
    running_mailbox,
    virtual_clock,
)
from onionpost.testing.memory._network import (
    AGENCY_SOURCE,
    MailboxNode,
    Network,
    Node,
    RegistrarNode,
    befriend,
    network,
    until,
    write_record,
)
from onionpost.testing.memory._pipes import PIPE_CAPACITY, MemoryListener, MemoryStream, pipe_pair

__all__ = [
    "AGENCY_SOURCE",
    "KEY",
    "PIPE_CAPACITY",
    "Client",
    "Mailbox",
    "MailboxNode",
    "MemoryListener",
    "MemoryStream",
    "Network",
    "Node",
    "Peer",
    "RegistrarNode",
    "befriend",
    "envelope_bytes",
    "network",
    "pipe_pair",
    "running_mailbox",
    "until",
    "virtual_clock",
    "write_record",
]
