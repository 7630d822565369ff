"""The protocol core: the Noise handshake, the session, the wire records,
envelopes and pairing, as plain synchronous objects (no I/O: bytes in,
events out).

The one strict msgpack codec (:func:`pack`, :func:`unpack`,
:class:`NotMsgpack`) is also what the stores and the home's files encode
with; the X25519 :class:`~onionpost.proto.noise.KeyPair` is
:mod:`onionpost.proto.noise`'s.
"""

from __future__ import annotations

from onionpost.proto._msgpack import NotMsgpack, pack, unpack

__all__ = ["NotMsgpack", "pack", "unpack"]
