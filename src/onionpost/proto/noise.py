"""The Noise Protocol Framework, revision 34, plus the hybrid forward secrecy modifier.

Theory of operation
-------------------
A handshake is a list of message patterns, each a list of tokens (Noise §7).
:class:`HandshakeState` walks that table: every ``write_message`` or
``read_message`` consumes the next pattern and applies its tokens, in order,
to a :class:`SymmetricState` (``ck``, ``h`` and a :class:`CipherState`).
When the last pattern is done, ``Split()`` (Noise §5.2) yields two
CipherStates; the handshake hands them over in a :class:`HandshakeResult`
and refuses further use. Handshake and transport are different objects.

Supported: DH ``25519``; cipher ``ChaChaPoly``; hashes ``BLAKE2b`` and
``SHA256``; the interactive patterns NN, NK, XX, XK, IK, KK and the one-way
patterns N, K, X (Noise §7.4); modifiers ``psk0``..``psk3`` in any
combination (Noise §9) and, on interactive patterns, ``hfs`` with the KEM
``MLKEM768`` (``protocol-spec/noise.md`` §Hybrid forward secrecy), e.g.::

    Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b
    -> e, e1
    <- e, ee, ekem1, s, es
    -> s, se

    Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b        (one-way: the sealed envelope)
    <- s
    ...
    -> e, es, s, ss, psk

A one-way handshake is one message from the initiator (the sender) to the
responder (the recipient). After it, ``Split()`` works as usual but only the
first CipherState is used, sender to recipient (Noise §7.4); the other
direction of the :class:`HandshakeResult` refuses every use.

Randomness is injectable (ephemeral keys, the KEM seed and the KEM
encapsulation), so every transcript can be replayed as a test vector.
This module does no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from onionpost.errors import (
    ConfigError,
    LocalProtocolError,
    NonceExhaustedError,
    OnionpostError,
    RemoteProtocolError,
)
from onionpost.limits import NOISE_MAX_MESSAGE
from onionpost.proto import _crypto
from onionpost.proto._crypto import (
    DHLEN,
    MLKEM768_CIPHERTEXT_LEN,
    MLKEM768_PUBLIC_LEN,
    TAG_LEN,
    ChaChaPoly,
    Encapsulator,
    HashFunction,
    KemKeyPair,
    KeyPair,
)

__all__ = [
    "CipherState",
    "HandshakeResult",
    "HandshakeState",
    "KeyPair",
    "NoiseProtocol",
    "SymmetricState",
    "Token",
]

MAX_NONCE: Final = 2**64 - 1
PSK_LEN: Final = 32
_ZEROS32: Final = bytes(32)


class Token(enum.Enum):
    """Noise §7.1 tokens, plus ``e1`` and ``ekem1`` of the hfs modifier."""

    E = "e"
    S = "s"
    EE = "ee"
    ES = "es"
    SE = "se"
    SS = "ss"
    PSK = "psk"
    E1 = "e1"
    EKEM1 = "ekem1"


_T = Token


@dataclass(frozen=True, slots=True)
class _Pattern:
    # Pre-messages: tokens the initiator's / responder's peer knows in advance.
    initiator_pre: tuple[Token, ...]
    responder_pre: tuple[Token, ...]
    # Messages alternate, the initiator writing the first.
    messages: tuple[tuple[Token, ...], ...]


# Noise §7.4 (one-way) and §7.5 (interactive): the fundamental patterns we support.
_PATTERNS: Final[dict[str, _Pattern]] = {
    "N": _Pattern((), (_T.S,), ((_T.E, _T.ES),)),
    "K": _Pattern((_T.S,), (_T.S,), ((_T.E, _T.ES, _T.SS),)),
    "X": _Pattern((), (_T.S,), ((_T.E, _T.ES, _T.S, _T.SS),)),
    "NN": _Pattern((), (), ((_T.E,), (_T.E, _T.EE))),
    "NK": _Pattern((), (_T.S,), ((_T.E, _T.ES), (_T.E, _T.EE))),
    "XX": _Pattern((), (), ((_T.E,), (_T.E, _T.EE, _T.S, _T.ES), (_T.S, _T.SE))),
    "XK": _Pattern((), (_T.S,), ((_T.E, _T.ES), (_T.E, _T.EE), (_T.S, _T.SE))),
    "IK": _Pattern((), (_T.S,), ((_T.E, _T.ES, _T.S, _T.SS), (_T.E, _T.EE, _T.SE))),
    "KK": _Pattern((_T.S,), (_T.S,), ((_T.E, _T.ES, _T.SS), (_T.E, _T.EE, _T.SE))),
}

_NAME_RE: Final = re.compile(
    r"^Noise_(?P<pattern>[A-Z]{1,2})(?P<modifiers>[a-z0-9+]*)_(?P<dh>[A-Za-z0-9+]+)"
    r"_(?P<cipher>[A-Za-z0-9]+)_(?P<hash>[A-Za-z0-9]+)$"
)


def _apply_hfs(messages: list[list[Token]]) -> None:
    # hfs: "e1" follows the initiator's first "e"; "ekem1" follows the first "ee".
    for tokens in messages[0::2]:
        if Token.E in tokens:
            tokens.insert(tokens.index(Token.E) + 1, Token.E1)
            break
    for tokens in messages:
        if Token.EE in tokens:
            tokens.insert(tokens.index(Token.EE) + 1, Token.EKEM1)
            break


@dataclass(frozen=True, slots=True)
class NoiseProtocol:
    """A parsed Noise protocol name, e.g. ``Noise_XXpsk0+psk2_25519_ChaChaPoly_SHA256``."""

    name: str
    pattern: _Pattern = field(repr=False)
    hash: HashFunction = field(repr=False)
    psk_count: int
    hybrid: bool

    @property
    def one_way(self) -> bool:
        """A one-way pattern (Noise §7.4): a single message, initiator to responder."""
        return len(self.pattern.messages) == 1

    @classmethod
    def from_name(cls, name: str) -> NoiseProtocol:
        m = _NAME_RE.fullmatch(name)
        if m is None:
            raise ConfigError(f"not a Noise protocol name: {name!r}")
        base = _PATTERNS.get(m["pattern"])
        if base is None:
            raise ConfigError(f"unsupported handshake pattern {m['pattern']!r}")
        modifiers = m["modifiers"].split("+") if m["modifiers"] else []
        hybrid = False
        psks: list[int] = []
        for mod in modifiers:
            if mod == "hfs" and not hybrid and not psks:
                hybrid = True
            elif re.fullmatch(r"psk[0-9]", mod) and int(mod[3:]) not in psks:
                psks.append(int(mod[3:]))
            else:
                raise ConfigError(f"unsupported or misplaced modifier {mod!r}")
        if hybrid and len(base.messages) == 1:
            # hfs needs a reply to carry ekem1: a one-way pattern has none.
            raise ConfigError(f"hfs needs an interactive pattern, not {m['pattern']!r}")
        expected_dh = "25519+MLKEM768" if hybrid else "25519"
        if m["dh"] != expected_dh:
            raise ConfigError(f"DH must be {expected_dh!r} for this pattern, not {m['dh']!r}")
        if m["cipher"] != "ChaChaPoly":
            raise ConfigError(f"unsupported cipher {m['cipher']!r}")
        hash_fn = _crypto.HASHES.get(m["hash"])
        if hash_fn is None:
            raise ConfigError(f"unsupported hash {m['hash']!r}")
        messages = [list(tokens) for tokens in base.messages]
        if hybrid:
            _apply_hfs(messages)
        for n in psks:
            # Noise §9.2: psk0 opens the first message; pskN closes message N.
            if n > len(messages):
                raise ConfigError(f"psk{n} is past the last message of {m['pattern']}")
            if n == 0:
                messages[0].insert(0, Token.PSK)
            else:
                messages[n - 1].append(Token.PSK)
        pattern = _Pattern(
            base.initiator_pre, base.responder_pre, tuple(tuple(t) for t in messages)
        )
        return cls(name, pattern, hash_fn, len(psks), hybrid)


class CipherState:
    """Noise §5.1: a key ``k`` (or none) and a 64-bit nonce ``n``."""

    __slots__ = ("_cipher", "_k", "n")

    def __init__(self, key: bytes | None = None) -> None:
        self._k: bytes | None = None
        self._cipher: ChaChaPoly | None = None
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def __repr__(self) -> str:
        return f"CipherState(has_key={self._k is not None}, n={self.n})"

    def initialize_key(self, key: bytes | None) -> None:
        # The AEAD object is made on first use: many handshake keys are
        # replaced by the next MixKey before they encrypt anything.
        self._k = key
        self._cipher = None
        self.n = 0

    def _aead(self) -> ChaChaPoly | None:
        if self._cipher is None and self._k is not None:
            self._cipher = ChaChaPoly(self._k)
        return self._cipher

    def has_key(self) -> bool:
        return self._k is not None

    def set_nonce(self, nonce: int) -> None:
        if not 0 <= nonce <= MAX_NONCE:
            raise LocalProtocolError("a nonce is an unsigned 64-bit integer")
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        cipher = self._cipher or self._aead()
        if cipher is None:
            return plaintext
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhaustedError("nonce space exhausted; the session must end")
        out = cipher.encrypt(n, ad, plaintext)
        self.n = n + 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        cipher = self._cipher or self._aead()
        if cipher is None:
            return ciphertext
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhaustedError("nonce space exhausted; the session must end")
        # On failure n is left as it was (Noise §5.1).
        out = cipher.decrypt(n, ad, ciphertext)
        self.n = n + 1
        return out

    def rekey(self) -> None:
        """Noise §4.2 REKEY: k = ENCRYPT(k, 2^64-1, "", zeros)[:32]; n is unchanged."""
        cipher = self._aead()
        if cipher is None:
            raise LocalProtocolError("rekey needs a key")
        key = cipher.encrypt(MAX_NONCE, b"", _ZEROS32)[:32]
        self._k = key
        self._cipher = ChaChaPoly(key)


class _AbsentCipherState(CipherState):
    """The direction a one-way pattern does not have (Noise §7.4).

    An unkeyed CipherState passes plaintext through (Noise §5.1), which here
    would send in the clear: every use is refused instead.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "CipherState(absent: one-way pattern)"

    def initialize_key(self, key: bytes | None) -> None:
        if key is not None:
            raise LocalProtocolError("a one-way handshake has no keys in this direction")
        super().initialize_key(None)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        raise LocalProtocolError("a one-way handshake has no keys in this direction")

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        raise LocalProtocolError("a one-way handshake has no keys in this direction")

    def rekey(self) -> None:
        raise LocalProtocolError("a one-way handshake has no keys in this direction")


class SymmetricState:
    """Noise §5.2: the chaining key ``ck``, handshake hash ``h`` and a CipherState."""

    __slots__ = ("_cipher", "_ck", "_hash", "h")

    def __init__(self, protocol_name: bytes, hash_fn: HashFunction) -> None:
        self._hash = hash_fn
        if len(protocol_name) <= hash_fn.hashlen:
            self.h = protocol_name + bytes(hash_fn.hashlen - len(protocol_name))
        else:
            self.h = hash_fn.hash(protocol_name)
        self._ck = self.h
        self._cipher = CipherState()

    def __repr__(self) -> str:
        return f"SymmetricState(hash={self._hash.name}, has_key={self._cipher.has_key()})"

    def has_key(self) -> bool:
        return self._cipher.has_key()

    def mix_key(self, ikm: bytes) -> None:
        self._ck, temp_k = self._hash.hkdf2(self._ck, ikm)
        self._cipher.initialize_key(temp_k[:32])

    def mix_hash(self, data: bytes) -> None:
        self.h = self._hash.new(self.h + data).digest()

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self._ck, temp_h, temp_k = self._hash.hkdf3(self._ck, ikm)
        self.mix_hash(temp_h)
        self._cipher.initialize_key(temp_k[:32])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self._cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self._cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        temp_k1, temp_k2 = self._hash.hkdf2(self._ck, b"")
        return CipherState(temp_k1[:32]), CipherState(temp_k2[:32])


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a finished handshake hands over; the handshake itself is then spent."""

    send: CipherState = field(repr=False)
    receive: CipherState = field(repr=False)
    handshake_hash: bytes
    remote_static: bytes | None


class HandshakeState:
    """Noise §5.3, driven by the token table of a :class:`NoiseProtocol`.

    ``ephemeral`` and ``kem_seed`` inject the local ephemeral keys and
    ``encapsulate`` the KEM encapsulation, for test vectors; by default they
    come from the OS CSPRNG.
    """

    __slots__ = (
        "_e",
        "_e1",
        "_encapsulate",
        "_initiator",
        "_kem_seed",
        "_messages",
        "_position",
        "_protocol",
        "_psks",
        "_re",
        "_re1",
        "_result",
        "_rs",
        "_s",
        "_ss",
    )

    def __init__(
        self,
        protocol: NoiseProtocol | str,
        *,
        initiator: bool,
        prologue: bytes = b"",
        static: KeyPair | None = None,
        remote_static: bytes | None = None,
        psks: Sequence[bytes] = (),
        ephemeral: KeyPair | None = None,
        kem_seed: bytes | None = None,
        encapsulate: Encapsulator | None = None,
    ) -> None:
        if isinstance(protocol, str):
            protocol = NoiseProtocol.from_name(protocol)
        if len(psks) != protocol.psk_count or any(len(p) != PSK_LEN for p in psks):
            raise ConfigError(f"{protocol.name} needs {protocol.psk_count} PSKs of 32 bytes")
        self._protocol = protocol
        self._initiator = initiator
        self._s = static
        self._e = ephemeral
        self._rs = remote_static
        self._re: bytes | None = None
        self._e1: KemKeyPair | None = None
        self._re1: bytes | None = None
        self._kem_seed = kem_seed
        self._encapsulate = encapsulate or _crypto.mlkem768_encapsulate
        # Consumed in the order the psk tokens appear in the pattern (Noise §9).
        self._psks = list(psks)
        self._messages = protocol.pattern.messages
        self._position = 0
        self._result: HandshakeResult | None = None
        self._ss = SymmetricState(protocol.name.encode("ascii"), protocol.hash)
        self._ss.mix_hash(prologue)
        pattern = protocol.pattern
        # Noise §7.1 pre-messages: each side hashes the keys known in advance.
        # Only "s" appears in the pre-messages of the patterns we support.
        sides = ((pattern.initiator_pre, initiator), (pattern.responder_pre, not initiator))
        for pre, mine in sides:
            if pre:
                key = (static.public if static else None) if mine else remote_static
                if key is None:
                    side = "our" if mine else "the remote"
                    raise ConfigError(f"{protocol.name} needs {side} static key in advance")
                self._ss.mix_hash(key)
        needs_s = any(
            Token.S in msg for i, msg in enumerate(self._messages) if (i % 2 == 0) == initiator
        )
        if needs_s and static is None:
            raise ConfigError(f"{protocol.name} needs our static key")

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "responder"
        return f"HandshakeState({self._protocol.name}, {role}, message={self._position})"

    @property
    def protocol(self) -> NoiseProtocol:
        return self._protocol

    @property
    def is_my_turn(self) -> bool:
        return (self._position % 2 == 0) == self._initiator

    @property
    def handshake_hash(self) -> bytes:
        """``h`` so far (Noise §5.2 GetHandshakeHash)."""
        return self._ss.h

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static key. After a failure it was never proven: refused."""
        if self._result is None and self._position >= len(self._messages):
            raise LocalProtocolError("the handshake failed", state=self._position)
        return self._rs

    @property
    def complete(self) -> bool:
        return self._result is not None

    def result(self) -> HandshakeResult:
        if self._result is None:
            raise LocalProtocolError("the handshake is not finished", state=self._position)
        return self._result

    # -- sizes ------------------------------------------------------------------

    def _overhead(self, tokens: tuple[Token, ...]) -> tuple[int, bool]:
        """Bytes the tokens add to a message, and whether the payload gets a tag."""
        has_key = self._ss.has_key()
        psk_mode = self._protocol.psk_count > 0
        size = 0
        for token in tokens:
            if token is Token.E:
                size += DHLEN
                has_key = has_key or psk_mode
            elif token is Token.S:
                size += DHLEN + (TAG_LEN if has_key else 0)
            elif token is Token.E1:
                size += MLKEM768_PUBLIC_LEN + (TAG_LEN if has_key else 0)
            elif token is Token.EKEM1:
                size += MLKEM768_CIPHERTEXT_LEN + (TAG_LEN if has_key else 0)
                has_key = True
            else:
                has_key = True
        return size, has_key

    def max_payload(self) -> int:
        """The largest payload the next message can carry (Noise §3: 65535 in all)."""
        size, tagged = self._overhead(self._next_tokens())
        return NOISE_MAX_MESSAGE - size - (TAG_LEN if tagged else 0)

    def _next_tokens(self) -> tuple[Token, ...]:
        if self._result is not None or self._position >= len(self._messages):
            raise LocalProtocolError("the handshake is finished", state=self._position)
        return self._messages[self._position]

    # -- the two operations --------------------------------------------------------

    def _dh(self, token: Token) -> bytes:
        # Noise §5.3: which keys each DH token combines depends on the role.
        e, s, re, rs = self._e, self._s, self._re, self._rs
        if token is Token.EE:
            local, remote = e, re
        elif token is Token.SS:
            local, remote = s, rs
        elif (token is Token.ES) == self._initiator:
            local, remote = e, rs
        else:
            local, remote = s, re
        if local is None or remote is None:
            raise LocalProtocolError(f"{token.value} without the keys it needs")
        return _crypto.x25519(local.private, remote)

    def write_message(self, payload: bytes = b"") -> bytes:
        """Noise §5.3 WriteMessage: the next handshake message, carrying ``payload``."""
        if not self.is_my_turn:
            raise LocalProtocolError("it is the peer's turn to send", state=self._position)
        tokens = self._next_tokens()
        size, tagged = self._overhead(tokens)
        if size + len(payload) + (TAG_LEN if tagged else 0) > NOISE_MAX_MESSAGE:
            raise LocalProtocolError("payload too large for one Noise message")
        try:
            message = self._write_tokens(tokens, payload)
        except OnionpostError:
            # State has absorbed part of the message: the handshake is spent.
            self._fail()
            raise
        self._advance()
        return message

    def _write_tokens(self, tokens: tuple[Token, ...], payload: bytes) -> bytes:
        ss = self._ss
        out: list[bytes] = []
        for token in tokens:
            if token is Token.E:
                if self._e is None:
                    self._e = KeyPair.generate()
                out.append(self._e.public)
                ss.mix_hash(self._e.public)
                if self._protocol.psk_count:
                    ss.mix_key(self._e.public)  # Noise §9.2
            elif token is Token.S:
                if self._s is None:
                    raise LocalProtocolError("no static key")
                out.append(ss.encrypt_and_hash(self._s.public))
            elif token is Token.PSK:
                ss.mix_key_and_hash(self._psks.pop(0))
            elif token is Token.E1:
                self._e1 = KemKeyPair(self._kem_seed)
                self._kem_seed = None
                out.append(ss.encrypt_and_hash(self._e1.public))
            elif token is Token.EKEM1:
                if self._re1 is None:
                    raise LocalProtocolError("ekem1 before e1")
                ciphertext, secret = self._encapsulate(self._re1)
                out.append(ss.encrypt_and_hash(ciphertext))
                ss.mix_key(secret)
            else:
                ss.mix_key(self._dh(token))
        out.append(ss.encrypt_and_hash(payload))
        return b"".join(out)

    def read_message(self, message: bytes) -> bytes:
        """Noise §5.3 ReadMessage: the payload of the peer's next handshake message.

        Any failure spends the handshake: it raises a RemoteProtocolError, and
        every later call raises LocalProtocolError.
        """
        if self.is_my_turn:
            raise LocalProtocolError("it is our turn to send", state=self._position)
        tokens = self._next_tokens()
        if len(message) > NOISE_MAX_MESSAGE:
            self._fail()
            raise RemoteProtocolError("handshake message too long", state=self._position)
        try:
            payload = self._read_tokens(tokens, memoryview(message))
        except RemoteProtocolError:
            self._fail()
            raise
        self._advance()
        return payload

    def _read_tokens(self, tokens: tuple[Token, ...], message: memoryview) -> bytes:
        ss = self._ss
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            if len(message) - pos < n:
                raise RemoteProtocolError("handshake message truncated", state=self._position)
            chunk = bytes(message[pos : pos + n])
            pos += n
            return chunk

        for token in tokens:
            if token is Token.E:
                re = take(DHLEN)
                self._re = re
                ss.mix_hash(re)
                if self._protocol.psk_count:
                    ss.mix_key(re)  # Noise §9.2
            elif token is Token.S:
                self._rs = ss.decrypt_and_hash(take(DHLEN + (TAG_LEN if ss.has_key() else 0)))
            elif token is Token.PSK:
                ss.mix_key_and_hash(self._psks.pop(0))
            elif token is Token.E1:
                n = MLKEM768_PUBLIC_LEN + (TAG_LEN if ss.has_key() else 0)
                self._re1 = ss.decrypt_and_hash(take(n))
            elif token is Token.EKEM1:
                if self._e1 is None:
                    raise LocalProtocolError("ekem1 before e1")
                n = MLKEM768_CIPHERTEXT_LEN + (TAG_LEN if ss.has_key() else 0)
                ciphertext = ss.decrypt_and_hash(take(n))
                ss.mix_key(self._e1.decapsulate(ciphertext))
                self._e1 = None
            else:
                ss.mix_key(self._dh(token))
        rest = bytes(message[pos:])
        if ss.has_key() and len(rest) < TAG_LEN:
            raise RemoteProtocolError("handshake message truncated", state=self._position)
        return ss.decrypt_and_hash(rest)

    def _advance(self) -> None:
        self._position += 1
        if self._position == len(self._messages):
            c1, c2 = self._ss.split()
            if self._protocol.one_way:
                # Noise §7.4: only the initiator -> responder direction exists.
                c2 = _AbsentCipherState()
            send, receive = (c1, c2) if self._initiator else (c2, c1)
            self._result = HandshakeResult(send, receive, self._ss.h, self._rs)
            # Forget the secrets the handshake no longer needs.
            self._e = self._s = None
            self._e1 = None
            self._psks = []

    def _fail(self) -> None:
        self._position = len(self._messages)
        self._rs = None
