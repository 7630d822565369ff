"""An evidence bundle's times are bounded (evidence.md §6.2): a message's
``created_ms`` past the last ms of year 9999, or a manifest whose export time
is not a date the manifest can show, is a problem line, never an exception
out of :func:`bundle.verify`. The bundles here are made from scratch by a key
of their own, signed and logged as an export is: what anyone can hand over."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import VerificationError
from onionpost.limits import MAX_TIME_MS
from onionpost.proto import bundle, merkle, note
from onionpost.proto.evidence import origin
from onionpost.proto.identity import Identity

SEED = hashlib.blake2b(b"onionpost bundle times").digest()
ENDPOINT = Identity(SEED[:32])
PEER = Identity(SEED[32:])
NAME = str(ENDPOINT.address)
T_MS = 1_800_000_000_000
MESSAGE = bundle.BundleMessage(
    id=bytes(range(16)),
    direction="in",
    counterparty=str(PEER.address),
    kind="text",
    created_ms=T_MS,
    content_type="text/plain",
    body="report 1",
)


def _start(manifest: bytes, value: str) -> bytes:
    """``manifest`` with the export's time (its one claim of its own) set to ``value``."""
    document = json.loads(manifest)
    for node in document["@graph"]:
        if node["@type"] == "case-investigation:InvestigativeAction":
            node["uco-action:startTime"]["@value"] = value
    return json.dumps(document, indent=1).encode()


def _bundle(created_ms: int, *, start: str | None = None) -> zipfile.ZipFile:
    """A bundle of one received text made at ``created_ms``, logged, signed as
    a whole and with its manifest (made for a sound time; ``start``: the
    manifest's export time put in)."""
    message = replace(MESSAGE, created_ms=created_ms)
    leaf = message.entry_for(T_MS).encode()
    checkpoint_text = note.Checkpoint(origin(NAME), 1, merkle.leaf_hash(leaf)).to_text()
    document = bundle.bundle_json(
        endpoint=NAME,
        checkpoint=note.sign(checkpoint_text, NAME, ENDPOINT),
        witnesses=[],
        entries=[(0, leaf, ())],
        messages=[message],
        selection={"contact": None, "since_ms": None, "until_ms": None, "group": None},
    )
    manifest = bundle.case_manifest(
        endpoint=NAME,
        messages=[replace(message, created_ms=min(created_ms, MAX_TIME_MS))],
        file_sha256={},
        made_ms=T_MS,
        version="0",
        bundle_id=hashlib.sha256(document).hexdigest()[:32],
    )
    if start is not None:
        manifest = _start(manifest, start)
    signature = note.sign(bundle.export_statement(NAME, document), NAME, ENDPOINT)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(bundle.BUNDLE_NAME, document)
        archive.writestr(bundle.SIGNATURE_NAME, signature.to_bytes())
        archive.writestr(bundle.MANIFEST_NAME, manifest)
    return zipfile.ZipFile(buffer)


def test_the_made_bundle_verifies() -> None:
    report = bundle.verify(_bundle(T_MS))
    assert report.problems == []
    assert (report.entries, report.messages) == (1, 1)


@pytest.mark.parametrize("created_ms", [0, MAX_TIME_MS], ids=["1970", "the end of year 9999"])
def test_created_ms_at_the_bounds_verifies(created_ms: int) -> None:
    assert bundle.verify(_bundle(created_ms)).problems == []


@pytest.mark.parametrize(
    "created_ms", [MAX_TIME_MS + 1, 2**63, 2**64 - 1], ids=["a ms late", "2^63", "2^64-1"]
)
def test_created_ms_past_year_9999_is_a_problem_line(created_ms: int) -> None:
    # Before the bound: ValueError "year 10000 is out of range" out of verify,
    # and a traceback from verify-export.
    report = bundle.verify(_bundle(created_ms))
    assert report.problems == [
        f"message {MESSAGE.id.hex()}: 'created_ms' is not a time in ms from 1970 "
        f"to the end of year 9999 (0 to {MAX_TIME_MS})"
    ]


def test_from_json_bounds_created_ms() -> None:
    item = MESSAGE.to_json() | {"created_ms": MAX_TIME_MS + 1}
    with pytest.raises(VerificationError, match="end of year 9999"):
        bundle.BundleMessage.from_json(item)
    assert bundle.BundleMessage.from_json(item | {"created_ms": MAX_TIME_MS}).created_ms == (
        MAX_TIME_MS
    )


@pytest.mark.parametrize(
    "start",
    [
        "0001-01-01T00:00:00+01:00",  # the year 0 in UTC
        "9999-12-31T23:59:59-01:00",  # the year 10000 in UTC
        "1969-12-31T23:59:59Z",  # before 1970
        "0001-01-01T00:00:00",  # no offset: local time, not a time an export writes
        "2027-01-15T08:00:00",
    ],
)
def test_a_manifest_time_out_of_range_is_a_problem_line(start: str) -> None:
    report = bundle.verify(_bundle(T_MS, start=start))
    assert report.problems == ["manifest: it is not the manifest an export writes"]


@settings(max_examples=120, deadline=None)
@given(
    created_ms=st.integers(0, 2**64 - 1)
    | st.sampled_from([MAX_TIME_MS, MAX_TIME_MS + 1, 2**63 - 1, 2**63]),
    start=st.none()
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.datetimes().map(lambda d: d.isoformat()),
)
def test_no_time_in_a_bundle_raises_out_of_verify(created_ms: int, start: str | None) -> None:
    report = bundle.verify(_bundle(created_ms, start=start))
    if created_ms > MAX_TIME_MS:
        assert any("'created_ms'" in p for p in report.problems)
