"""The endpoint daemon: the delivery engine, the owner's mailbox link and the
endpoint's local API, on an :class:`~onionpost.host.OnionHost`.

``_daemon.py`` wires them; ``delivery/`` is the engine (a link per
contact, a session per channel); ``_mailbox.py`` is the owner's side of a
mailbox (pairing, draining, prekeys). The local API's handlers are grouped
by what they serve, one class a module (``_contacts.py``, ``_messages.py``,
``_trust.py``, ``_evidence.py``, ``_lists.py``, ``_groups.py``), each an
attribute of the :class:`Daemon` (``daemon.messages.send_text``).
"""

from __future__ import annotations

from onionpost.daemon._daemon import Daemon
from onionpost.daemon.delivery import DeliveryEngine, DeliveryPolicy, Dial
from onionpost.host import InlineWorker, StoreWorker, ThreadWorker

__all__ = [
    "Daemon",
    "DeliveryEngine",
    "DeliveryPolicy",
    "Dial",
    "InlineWorker",
    "StoreWorker",
    "ThreadWorker",
]
