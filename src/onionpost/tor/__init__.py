"""The only place onionpost talks to tor: stem for control, SOCKS5 for dialing.

::

    async with open_tor(TorConfig(data_dir=path)) as tor:
        nursery.start_soon(tor.supervise)
        service = await tor.publish(seed, virtual_port=443, target=run_dir / "onion.sock",
                                    authorized_clients=[peer_x25519_public])
        await tor.add_client_auth(peer_address, our_x25519_private)
        with trio.fail_after(60):
            stream = await tor.dial(peer_address, 443)

Modules: :mod:`._tor` (the adapter and its supervision), :mod:`._config`
(:class:`TorConfig` and launch mode's torrc), :mod:`._publish` (ADD_ONION
and descriptor upload tracking), :mod:`._controller` (stem bridged into trio,
and control-reply parsing; nothing else imports stem), :mod:`._socks` (a
sans-I/O SOCKS5 client), :mod:`._dial` (dialing and :class:`DialScheduler`),
:mod:`._process` (stopping tor processes, the tails of their logs).

For tor processes that are not the adapter's
-------------------------------------------
The private test network (:mod:`onionpost.testing.testnet`) runs tors of its
own, synchronously; these are what it shares with the adapter, so that stem
stays in this package and nothing is written twice:

- :class:`ControlProbe`: a short synchronous control connection for GETINFO,
  closed at a deadline;
- :func:`bootstrap_progress`: the percentage in ``status/bootstrap-phase``;
- :func:`stop_processes`: SIGTERM, a grace period, SIGKILL;
- :func:`tail_lines`: the end of a (notice) log, bounded;
- :func:`tcp_listeners`: the TCP ports a set of processes listens on;
- :func:`vanguards_lite_on`, :func:`tor_has_pow`, :func:`consensus_param`:
  what ``onionpost doctor`` needs to judge the hardening profile (spec §1.3).

Dial failures
-------------
:meth:`Tor.dial` raises :class:`~onionpost.errors.DialError` with one of
these ``reason`` tokens (stable API):

=============================  ================================================
``descriptor-not-found``       0xF0: no HSDir has the descriptor (not published,
                               or offline for long). Right after a publish this
                               can be a false alarm (TOR-TESTNET.md): retry.
``descriptor-invalid``         0xF1
``introduction-failed``        0xF2: descriptor found, service not there (offline
                               or republished)
``rendezvous-failed``          0xF3
``client-auth-missing``        0xF4: the service requires a client key we lack
``client-auth-wrong``          0xF5: our client key is not (or no longer) authorized
``bad-address``                0xF6
``introduction-timed-out``     0xF7
``general-failure`` ...        RFC 1928 codes 0x01-0x08: ``general-failure``,
                               ``not-allowed``, ``network-unreachable``,
                               ``host-unreachable``, ``connection-refused``,
                               ``ttl-expired``, ``command-not-supported``,
                               ``address-type-not-supported``
``unknown-reply``              an unassigned reply code
``proxy-unreachable``          cannot connect to tor's SOCKS port
``proxy-closed``               the SOCKS connection closed during negotiation
``proxy-protocol-error``       the SOCKS port answered nonsense
``proxy-auth-rejected``        the SOCKS port refused our (isolation) credentials
=============================  ================================================

The 0xF0-0xF7 codes need tor's ``ExtendedErrors`` SocksPort flag, which a
tor we launch always has; an attached tor without it reports onion failures
as ``general-failure`` or ``host-unreachable``.
"""

from __future__ import annotations

from onionpost.tor._config import CONTROL_SOCKET, SOCKS_SOCKET, check_unix_path, vanguards_lite_on
from onionpost.tor._controller import ControlProbe, bootstrap_progress, consensus_param
from onionpost.tor._dial import DialScheduler
from onionpost.tor._process import TcpListener, stop_processes, tail_lines, tcp_listeners
from onionpost.tor._publish import MAX_AUTHORIZED_CLIENTS, MAX_STREAMS_PER_CIRCUIT, tor_has_pow
from onionpost.tor._socks import REPLY_REASONS
from onionpost.tor._tor import (
    DescriptorState,
    Hardening,
    OnionService,
    ServiceHealth,
    Tor,
    TorConfig,
    TorHealth,
    TorState,
    TorStatus,
    open_tor,
)

__all__ = [
    "CONTROL_SOCKET",
    "MAX_AUTHORIZED_CLIENTS",
    "MAX_STREAMS_PER_CIRCUIT",
    "REPLY_REASONS",
    "SOCKS_SOCKET",
    "ControlProbe",
    "DescriptorState",
    "DialScheduler",
    "Hardening",
    "OnionService",
    "ServiceHealth",
    "Tor",
    "TcpListener",
    "TorConfig",
    "TorHealth",
    "TorState",
    "TorStatus",
    "bootstrap_progress",
    "check_unix_path",
    "consensus_param",
    "open_tor",
    "stop_processes",
    "tail_lines",
    "tcp_listeners",
    "tor_has_pow",
    "vanguards_lite_on",
]
