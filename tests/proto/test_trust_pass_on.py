"""After a contact's trust record is met: whether what we now hold newer goes
on to the contacts we have sessions with, and how (trust.md §7.2), as a table
over every input (:func:`pass_on`)."""

from __future__ import annotations

import itertools

import pytest

from onionpost.proto.trust_session import PassOn, TrustRecord, pass_on

STAPLE, GOSSIP = TrustRecord.STAPLE, TrustRecord.GOSSIP
NOTHING, REGOSSIP, RESTAPLE = PassOn.NOTHING, PassOn.REGOSSIP, PassOn.RESTAPLE

# (record, new list, new checkpoint, own agency) -> what the sessions do.
TABLE = {
    # Nothing newer: nothing to pass on, whoever's agency it is.
    (STAPLE, False, False, False): NOTHING,
    (STAPLE, False, False, True): NOTHING,
    (GOSSIP, False, False, False): NOTHING,
    (GOSSIP, False, False, True): NOTHING,
    # Our own agency's newer list or checkpoint travels in our staple.
    (STAPLE, True, False, True): RESTAPLE,
    (STAPLE, False, True, True): RESTAPLE,
    (STAPLE, True, True, True): RESTAPLE,
    (GOSSIP, True, False, True): RESTAPLE,
    (GOSSIP, False, True, True): RESTAPLE,
    (GOSSIP, True, True, True): RESTAPLE,
    # Another agency's newer checkpoint goes on as gossip.
    (STAPLE, False, True, False): REGOSSIP,
    (GOSSIP, False, True, False): REGOSSIP,
    # Another agency's newer list: as gossip when it came as gossip; from a
    # staple, a restaple (which regossips too).
    (GOSSIP, True, False, False): REGOSSIP,
    (GOSSIP, True, True, False): REGOSSIP,
    (STAPLE, True, False, False): RESTAPLE,
    (STAPLE, True, True, False): RESTAPLE,
}


def test_the_table_covers_every_input() -> None:
    every = set(itertools.product(TrustRecord, (False, True), (False, True), (False, True)))
    assert set(TABLE) == every


@pytest.mark.parametrize(("key", "expected"), sorted(TABLE.items(), key=str))
def test_pass_on(key: tuple[TrustRecord, bool, bool, bool], expected: PassOn) -> None:
    record, new_list, new_checkpoint, own_agency = key
    got = pass_on(record, new_list=new_list, new_checkpoint=new_checkpoint, own_agency=own_agency)
    assert got is expected
