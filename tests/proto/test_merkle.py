"""RFC 6962 Merkle trees: known roots, proofs that verify, and every alteration refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import ConfigError, VerificationError
from onionpost.proto import merkle as mk

# The leaves of the RFC 6962 reference test data (certificate-transparency's
# merkle_tree_test), and the roots of the first 1..8 of them.
LEAVES = [
    bytes.fromhex(x)
    for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]  # fmt: skip
ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def _hashes(n: int) -> list[bytes]:
    return [mk.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.parametrize(("size", "root"), sorted(ROOTS.items()))
def test_roots_match_the_reference_data(size: int, root: str) -> None:
    assert mk.root_of([mk.leaf_hash(x) for x in LEAVES[:size]]).hex() == root


def test_the_frontier_resumes_from_its_saved_stack() -> None:
    hashes = _hashes(23)
    first = mk.Frontier()
    for h in hashes[:13]:
        first.append(h)
    resumed = mk.Frontier(first.size, first.stack)
    for h in hashes[13:]:
        resumed.append(h)
    assert resumed.root() == mk.root_of(hashes)
    with pytest.raises(ConfigError):
        mk.Frontier(13, first.stack[:-1])


@settings(max_examples=200)
@given(st.integers(1, 70), st.data())
def test_every_inclusion_proof_verifies_and_no_other_leaf_or_index_does(
    size: int, data: st.DataObject
) -> None:
    hashes = _hashes(size)
    mth = mk.list_hasher(hashes)
    root = mk.root_of(hashes)
    index = data.draw(st.integers(0, size - 1))
    proof = mk.inclusion_proof(index, size, mth)
    mk.verify_inclusion(hashes[index], index, size, proof, root)
    with pytest.raises(VerificationError) as wrong_leaf:
        mk.verify_inclusion(mk.leaf_hash(b"other"), index, size, proof, root)
    assert wrong_leaf.value.what == "inclusion"
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        with pytest.raises(VerificationError):
            mk.verify_inclusion(hashes[index], other, size, proof, root)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        flipped = list(proof)
        flipped[at] = bytes([flipped[at][0] ^ 1]) + flipped[at][1:]
        with pytest.raises(VerificationError):
            mk.verify_inclusion(hashes[index], index, size, flipped, root)
        with pytest.raises(VerificationError):
            mk.verify_inclusion(hashes[index], index, size, proof[:-1], root)
    with pytest.raises(VerificationError):
        mk.verify_inclusion(hashes[index], index, size, [*proof, root], root)


@settings(max_examples=200)
@given(st.integers(1, 70), st.data())
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(
    size: int, data: st.DataObject
) -> None:
    hashes = _hashes(size)
    mth = mk.list_hasher(hashes)
    old = data.draw(st.integers(0, size))
    old_root, root = mk.root_of(hashes[:old]), mk.root_of(hashes)
    proof = mk.consistency_proof(old, size, mth)
    mk.verify_consistency(old, size, old_root, root, proof)
    if 0 < old < size:
        # The old tree with one leaf changed is not a prefix of the new one.
        changed = list(hashes[:old])
        at = data.draw(st.integers(0, old - 1))
        changed[at] = mk.leaf_hash(b"rewritten")
        with pytest.raises(VerificationError) as rewritten:
            mk.verify_consistency(old, size, mk.root_of(changed), root, proof)
        assert rewritten.value.what == "consistency"
        with pytest.raises(VerificationError):
            mk.verify_consistency(old, size, old_root, mk.root_of(changed + hashes[old:]), proof)
        if len(proof) > 1:
            with pytest.raises(VerificationError):
                mk.verify_consistency(old, size, old_root, root, proof[1:])


def test_rfc6962_consistency_proofs_of_the_reference_tree() -> None:
    """Proof lengths of the reference tree (certificate-transparency's tests)."""
    hashes = [mk.leaf_hash(x) for x in LEAVES]
    mth = mk.list_hasher(hashes)
    assert [len(mk.consistency_proof(m, 8, mth)) for m in (1, 3, 4, 6)] == [3, 4, 1, 3]
    assert [len(mk.inclusion_proof(i, 8, mth)) for i in (0, 5)] == [3, 3]
    assert mk.inclusion_proof(0, 1, mth) == ()


def test_bad_arguments_and_oversized_proofs_are_refused() -> None:
    mth = mk.list_hasher(_hashes(4))
    with pytest.raises(ConfigError):
        mk.inclusion_proof(4, 4, mth)
    with pytest.raises(ConfigError):
        mk.consistency_proof(5, 4, mth)
    root = mk.root_of(_hashes(4))
    with pytest.raises(VerificationError):
        mk.verify_inclusion(_hashes(1)[0], 0, 4, [root] * 129, root)
    with pytest.raises(VerificationError):
        mk.verify_inclusion(_hashes(1)[0], 0, 4, [b"short"], root)
    with pytest.raises(VerificationError):
        mk.verify_consistency(4, 2, root, root, [])
    with pytest.raises(VerificationError):
        mk.verify_consistency(4, 4, root, mk.EMPTY_ROOT, [])


@settings(max_examples=100)
@given(st.integers(1, 300), st.data())
def test_kept_subtree_roots_give_the_hashes_and_proofs_the_leaves_give(
    size: int, data: st.DataObject
) -> None:
    hashes = _hashes(size)
    tree = mk.TreeHashes(hashes)
    whole = mk.list_hasher(hashes)
    assert len(tree) == size
    assert list(tree) == hashes
    assert tree.root() == mk.root_of(hashes)
    assert tree.stored_bytes < 2 * mk.HASH_LEN * size
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start + 1, size))
    assert tree.range_hash(start, end) == whole(start, end)
    smaller = data.draw(st.integers(1, size))
    mth = tree.hasher(smaller)
    assert tree.root(smaller) == mk.root_of(hashes[:smaller])
    index = data.draw(st.integers(0, smaller - 1))
    assert mk.inclusion_proof(index, smaller, mth) == mk.inclusion_proof(
        index, smaller, mk.list_hasher(hashes[:smaller])
    )
    assert mk.consistency_proof(index, smaller, mth) == mk.consistency_proof(
        index, smaller, mk.list_hasher(hashes[:smaller])
    )
    # A tree of ``smaller`` leaves has no leaf past it, whatever was appended since.
    if smaller < size:
        with pytest.raises(ConfigError):
            mth(0, smaller + 1)
    with pytest.raises(ConfigError):
        tree.hasher(size + 1)
    with pytest.raises(ConfigError):
        tree.range_hash(0, size + 1)
    with pytest.raises(ConfigError):
        tree.append(b"short")


def test_a_proof_from_kept_subtree_roots_holds_no_copy_of_the_tree() -> None:
    # A daemon makes a consistency proof for each contact that witnesses its log;
    # made from the leaves alone, each hashed the whole tree and held a dict of
    # every node (a 20,000-leaf log: ~30 MB a proof, and a daemon's RSS rose
    # with its log). From the kept roots a proof's peak is a few KiB.
    import tracemalloc

    tree = mk.TreeHashes(_hashes(50_000))
    tracemalloc.start()
    try:
        proof = mk.consistency_proof(31_337, 50_000, tree.hasher(50_000))
        path = mk.inclusion_proof(12_345, 50_000, tree.hasher(50_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    mk.verify_consistency(31_337, 50_000, tree.root(31_337), tree.root(), proof)
    mk.verify_inclusion(tree[12_345], 12_345, 50_000, path, tree.root())
