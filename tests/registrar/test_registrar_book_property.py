"""The registrar's book under any sequence of operations (hypothesis): the log
on disk is the log in memory; every list has a larger serial than the one
before; a revoked address is never endorsed again; every enrolled endpoint
not revoked gets a proof that verifies under the anchor, in the log."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onionpost.errors import ConfigError
from onionpost.proto import merkle
from onionpost.proto.identity import Identity
from onionpost.proto.trust import EndorsementProof, Status, check_endorsement, open_revocations
from onionpost.registrar import RegistrarBook, init_registrar
from tests.registrar._registrarkit import STORE_KEY, make_agency

T0 = 1_800_000_000
DAY = 86_400
ENDPOINTS = [Identity.generate() for _ in range(3)]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("enrol"), st.integers(0, 2)),
        st.tuples(st.just("renew"), st.integers(0, 2)),
        st.tuples(st.just("revoke"), st.integers(0, 2)),
        st.tuples(st.just("refresh"), st.just(0)),
        st.tuples(st.just("wait"), st.sampled_from([60, 900, DAY, 3 * DAY])),
    ),
    max_size=12,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_any_sequence_keeps_the_book_consistent(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        agency, anchor, signer = make_agency(root, T0)
        book = init_registrar(root / "registrar", agency, signer, STORE_KEY)
        now = T0
        serial = 0
        revoked: set[str] = set()
        for op, which in ops:
            if op == "wait":
                now += which
                continue
            identity = ENDPOINTS[which]
            address = str(identity.address)
            if op == "enrol":
                issued = book.new_code(identity.address, "Desk", "", now=now, expires=600)
                proof = book.enrol(
                    identity.address, issued.code.token(), bytes(32), now=now, days=7
                )
                assert (proof is None) == (address in revoked)
            elif op == "renew":
                proof = book.renew(identity.address, now=now, days=7)
                enrolled = any(e.address == address for e in book.endpoints())
                assert (proof is None) == (not enrolled or address in revoked)
            elif op == "revoke":
                if address in revoked:
                    try:
                        book.revoke(address, "again", now=now)
                    except ConfigError:
                        pass
                    else:
                        raise AssertionError("revoked twice")
                else:
                    enrolled = any(e.address == address for e in book.endpoints())
                    before = book.revocations
                    if not enrolled:
                        # Never enrolled here: refused unless forced, nothing signed.
                        try:
                            book.revoke(address, "lost", now=now)
                        except ConfigError:
                            assert book.revocations is before
                        else:
                            raise AssertionError("revoked one never enrolled")
                    book.revoke(address, "lost", now=now, force=not enrolled)
                    revoked.add(address)
            else:
                book.refresh(now, 900)
            held = book.revocations
            if held is not None:
                assert held.serial >= serial
                serial = held.serial
                assert {r.address for r in held.revoked} == revoked
        # The log on disk is the log held; a fresh open reads the same state.
        again = RegistrarBook.open(root / "registrar", STORE_KEY)
        assert again.log.root() == book.log.root()
        assert again.endpoints() == book.endpoints()
        leaves = [merkle.leaf_hash(book.directory.statement(i)) for i in range(book.log.size)]
        assert merkle.root_of(leaves) == book.log.root()
        # Every enrolled endpoint not revoked has a proof that verifies, in the log.
        book.refresh(now, 1)
        for enrolled in book.endpoints():
            identity = next(i for i in ENDPOINTS if str(i.address) == enrolled.address)
            proof = book.renew(identity.address, now=now, days=7)
            if enrolled.address in revoked:
                assert proof is None
                continue
            assert proof is not None
            listed = book.fetch(identity.address, 0)
            assert listed is not None
            revocations = open_revocations(
                anchor, listed.bundle.delegation, listed.bundle.revocations, now=now
            ).value
            verdict = check_endorsement(
                anchor,
                EndorsementProof.decode(proof),
                address=enrolled.address,
                revocations=revocations,
                now=now,
            )
            assert verdict.status is Status.ENDORSED, verdict
