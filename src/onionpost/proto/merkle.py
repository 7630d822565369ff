"""Merkle trees as RFC 6962 / RFC 9162 define them: hashes, roots, proofs and their checks.

Theory of operation
-------------------
One append-only log shape serves every onionpost log (an endpoint's evidence
log, an agency's log of its statements). Leaves are byte strings; with
SHA-256 (RFC 9162 §2.1.1)::

    leaf_hash(d)     = SHA-256(0x00 || d)
    node_hash(l, r)  = SHA-256(0x01 || l || r)
    MTH({})          = SHA-256("")
    MTH(D[0:n])      = node_hash(MTH(D[0:k]), MTH(D[k:n]))   k = largest power of 2 < n

A log keeps its leaves' hashes; the proofs are made from the hash of any
range ``[start, end)`` (:class:`RangeHasher`, which a store can answer from
saved subtree roots: :class:`TreeHashes`), and checked by the RFC 9162
§2.1.3.2 and §2.1.4.2 algorithms, which need only the proof, the sizes and
the two roots.

A log that keeps answering proofs keeps a :class:`TreeHashes`: every leaf
hash and the root of every perfect, aligned subtree (2^h leaves from a
multiple of 2^h), packed 32 bytes each in one bytearray a level (about 64
bytes a leaf in all). The ranges the RFC's proofs ask for are such subtrees
on their left and a right edge of at most log2(n) of them, so a proof costs
O(log² n) hashes and no memory beyond its result: with
:func:`list_hasher`, which memoizes what it computes from the leaves alone,
each proof hashed the whole tree again and held a dict of every node (a
daemon's RSS rose with its log, proof by proof).
:class:`Frontier` appends leaves and gives the root in O(log n) memory: what a
writer keeps to make the next checkpoint.

Everything here is pure (no I/O, no clock). A proof that does not verify
raises :class:`~onionpost.errors.VerificationError` (``what`` is
``"inclusion"`` or ``"consistency"``); nothing returns a bool.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Final

from onionpost.errors import ConfigError, VerificationError
from onionpost.limits import MAX_PROOF_HASHES

__all__ = [
    "EMPTY_ROOT",
    "HASH_LEN",
    "Frontier",
    "RangeHasher",
    "TreeHashes",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "list_hasher",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_LEN: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

#: The hash of the leaves ``[start, end)`` (end > start) of a tree.
RangeHasher = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over ``leaf_hashes`` (the leaves' hashes, not the leaves)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


class Frontier:
    """The roots of the perfect subtrees on the right edge of a growing tree.

    ``append`` takes a leaf's hash; ``root()`` is the tree's MTH. Memory is one
    hash per set bit of the size."""

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if size < 0 or len(stack) != size.bit_count():
            raise ConfigError("a frontier holds one hash per set bit of its size")
        self.size = size
        self._stack = list(stack)

    def __repr__(self) -> str:
        return f"Frontier(size={self.size})"

    @property
    def stack(self) -> tuple[bytes, ...]:
        """The subtree roots, largest (leftmost) first: what to save to resume."""
        return tuple(self._stack)

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_LEN:
            raise ConfigError("a leaf hash is 32 bytes")
        node = leaf
        size = self.size
        while size & 1:
            node = node_hash(self._stack.pop(), node)
            size >>= 1
        self._stack.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


class TreeHashes(Sequence[bytes]):
    """A growing tree's leaf hashes (indexed like a list) and the roots of its
    perfect aligned subtrees: see the module docstring."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels = [bytearray()]
        for leaf in leaf_hashes:
            self.append(leaf)

    def __repr__(self) -> str:
        return f"TreeHashes(size={len(self)})"

    def __len__(self) -> int:
        return len(self._levels[0]) // HASH_LEN

    def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("leaf hashes are read one at a time")
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(index)
        return self._node(0, index)

    def _node(self, height: int, index: int) -> bytes:
        return bytes(self._levels[height][index * HASH_LEN : (index + 1) * HASH_LEN])

    @property
    def stored_bytes(self) -> int:
        """The bytes of hashes held, every level."""
        return sum(len(level) for level in self._levels)

    def append(self, leaf: bytes) -> None:
        """Add the next leaf's hash, and the subtree roots it completes."""
        if len(leaf) != HASH_LEN:
            raise ConfigError("a leaf hash is 32 bytes")
        self._levels[0] += leaf
        node, height, count = leaf, 0, len(self)
        while count % 2 == 0:
            level = self._levels[height]
            node = node_hash(bytes(level[-2 * HASH_LEN : -HASH_LEN]), node)
            height += 1
            count //= 2
            if height == len(self._levels):
                self._levels.append(bytearray())
            self._levels[height] += node

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of the leaves ``[start, end)``."""
        if not 0 <= start < end <= len(self):
            raise ConfigError(f"no leaves [{start}, {end}) in a tree of {len(self)}")
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            height = n.bit_length() - 1
            return self._node(height, start >> height)
        k = _split(n)
        return node_hash(self.range_hash(start, start + k), self.range_hash(start + k, end))

    def hasher(self, size: int) -> RangeHasher:
        """A :data:`RangeHasher` over the tree of the first ``size`` leaves (later
        appends do not change it)."""
        if not 0 <= size <= len(self):
            raise ConfigError(f"no tree of {size} leaves in one of {len(self)}")

        def mth(start: int, end: int) -> bytes:
            if end > size:
                raise ConfigError(f"no leaves [{start}, {end}) in a tree of {size}")
            return self.range_hash(start, end)

        return mth

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        size = len(self) if size is None else size
        return EMPTY_ROOT if size == 0 else self.hasher(size)(0, size)


def list_hasher(leaf_hashes: Sequence[bytes]) -> RangeHasher:
    """A :data:`RangeHasher` over an in-memory list of leaf hashes (memoized)."""
    memo: dict[tuple[int, int], bytes] = {}

    def mth(start: int, end: int) -> bytes:
        key = (start, end)
        found = memo.get(key)
        if found is not None:
            return found
        if end - start == 1:
            value = leaf_hashes[start]
        else:
            k = _split(end - start)
            value = node_hash(mth(start, start + k), mth(start + k, end))
        memo[key] = value
        return value

    return mth


def inclusion_proof(index: int, size: int, mth: RangeHasher) -> tuple[bytes, ...]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 6962 §2.1.1)."""
    if not 0 <= index < size:
        raise ConfigError("the leaf is not in the tree")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            path.append(mth(start + k, end))
            end = start + k
        else:
            path.append(mth(start, start + k))
            start += k
    path.reverse()
    return tuple(path)


def consistency_proof(old_size: int, size: int, mth: RangeHasher) -> tuple[bytes, ...]:
    """The proof that the tree of ``old_size`` leaves is a prefix of the one of
    ``size`` leaves (RFC 6962 §2.1.2); empty when ``old_size`` is 0 or ``size``."""
    if not 0 <= old_size <= size:
        raise ConfigError("a consistency proof goes from a smaller tree to a larger one")
    if old_size in {0, size}:
        return ()
    path: list[bytes] = []
    start, end, m, whole = 0, size, old_size, True
    while m != end:
        k = _split(end - start)
        if m - start <= k:
            path.append(mth(start + k, end))
            end = start + k
        else:
            path.append(mth(start, start + k))
            start += k
            whole = False
    if not whole:
        path.append(mth(start, end))
    path.reverse()
    return tuple(path)


def _check_proof(proof: Sequence[bytes], what: str) -> None:
    if len(proof) > MAX_PROOF_HASHES or any(len(h) != HASH_LEN for h in proof):
        raise VerificationError(f"a malformed {what} proof", what=what)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size``
    leaves whose root is ``root`` (RFC 9162 §2.1.3.2)."""
    _check_proof(proof, "inclusion")
    if not 0 <= index < size or len(leaf) != HASH_LEN:
        raise VerificationError("the leaf is not in the tree", what="inclusion")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("the inclusion proof is too long", what="inclusion")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not hmac.compare_digest(r, root):
        raise VerificationError("the inclusion proof does not verify", what="inclusion")


def verify_consistency(
    old_size: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` leaves with root ``old_root`` is a
    prefix of the tree of ``size`` leaves with root ``root`` (RFC 9162 §2.1.4.2)."""
    _check_proof(proof, "consistency")
    failed = VerificationError("the consistency proof does not verify", what="consistency")
    if not 0 <= old_size <= size:
        raise failed
    if old_size == size:
        if proof or not hmac.compare_digest(old_root, root):
            raise failed
        return
    if old_size == 0:
        if proof:
            raise failed
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: its root starts the path
        path.insert(0, old_root)
    if not path:
        raise failed
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise failed
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not hmac.compare_digest(fr, old_root) or not hmac.compare_digest(sr, root):
        raise failed
