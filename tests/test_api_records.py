"""onionpost.api: one definition of the local API's shapes, strictly decoded."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_args, get_origin

import pytest

from onionpost import api


class Bad(Exception):
    pass


# The last ms of year 9999 (limits.MAX_TIME_MS), written out: what a client sees.
_END_9999 = 253_402_300_799_999


def decode(cls: type, data: object) -> object:
    return api.decode(cls, data, error=Bad)


MESSAGE = api.Message(
    id="ab" * 16,
    contact="bob",
    direction=api.Direction.IN,
    kind=api.Kind.FILE,
    state=api.MessageState.RECEIVED,
    created_ms=1,
    seq=7,
    received_ms=2,
    file=api.FileInfo("report.pdf", 10, True),
)
SAMPLES: list[object] = [
    api.Identity("alice", "x.onion", "onionpost1:..."),
    api.Status(
        "x.onion",
        api.TorStatus(api.TorState.OK, "published"),
        outbox_depth=3,
        last_delivery_ms=None,
        contacts=(api.ContactStatus("bob", "y.onion", reachable=False, queued=3, retry_in=4.5),),
    ),
    MESSAGE,
    api.StateChange("ab" * 16, api.MessageState.REFUSED, reason=1),
    api.PeerChange("bob", "y.onion", reachable=True),
    api.Queued("ab" * 16, api.MessageState.QUEUED, "a.bin", 3),
    api.Marked(2),
    api.MailboxStatus(
        api.Role.MAILBOX,
        owners=(api.MailboxOwnerUsage("x.onion", 1, 2, 3, 4, None),),
    ),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json(record: object) -> None:
    wire = json.loads(json.dumps(api.encode(record)))
    assert decode(type(record), wire) == record


def test_unknown_fields_are_ignored_missing_required_ones_are_not() -> None:
    wire = api.encode(MESSAGE) | {"from_the_future": [1, 2]}
    assert decode(api.Message, wire) == MESSAGE
    del wire["state"]
    with pytest.raises(Bad, match="'state' is missing"):
        decode(api.Message, wire)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_ms", True),  # a boolean is not an integer
        ("created_ms", 1.5),
        ("state", "lost"),  # not a state
        ("file", "report.pdf"),  # a record is an object
        ("seq", "7"),
    ],
)
def test_wrong_types_are_refused_with_the_field_named(field: str, value: object) -> None:
    wire = api.encode(MESSAGE) | {field: value}
    with pytest.raises(Bad, match=f"'{field}"):
        decode(api.Message, wire)


def test_optional_fields_may_be_absent_or_null() -> None:
    wire = api.encode(MESSAGE)
    for name in ("seq", "received_ms", "body", "file", "reason"):
        wire.pop(name)
    wire["content_type"] = None
    decoded = decode(api.Message, wire)
    assert isinstance(decoded, api.Message)
    assert decoded.seq is None
    assert decoded.file is None


@pytest.mark.parametrize(
    ("method", "params", "problem"),
    [
        ("nope", {}, "unknown method"),
        ("inbox", [], "'params' must be an object"),
        ("inbox", {"after": -1}, "after"),
        ("inbox", {"after": 2**64}, "after"),
        ("inbox", {"limit": 0}, "limit"),
        ("inbox", {"colour": "red"}, "no parameter 'colour'"),
        ("send_file", {"contact": "bob", "path": "relative.txt"}, "absolute"),
        ("message", {"id": "xyz"}, "hex id"),
        ("mark_read", {"ids": ["ab"] * 1001}, "at most 1000"),
        ("subscribe", {"topics": []}, "non-empty"),
        ("subscribe", {"topics": ["gossip"]}, "non-empty"),
        ("send_text", {"contact": "bob"}, "'body' is missing"),
        # Before the bound, 2^63 and -2^70 reached SQLite: OverflowError, an internal error.
        *(
            ("evidence_export", {"dest": "/tmp/case.zip", key: value}, f"{key}.*0 to {_END_9999}")
            for key in ("since_ms", "until_ms")
            for value in (-1, _END_9999 + 1, 2**63, 2**64, -(2**70))
        ),
    ],
)
def test_bad_requests_name_their_problem(method: str, params: object, problem: str) -> None:
    with pytest.raises(Bad, match=problem):
        api.decode_request(method, params, error=Bad)


def test_an_export_takes_any_time_to_the_end_of_year_9999() -> None:
    for since, until in ((0, _END_9999), (None, None), (1_800_000_000_000, None)):
        request = api.decode_request(
            "evidence_export",
            {"dest": "/tmp/case.zip", "since_ms": since, "until_ms": until},
            error=Bad,
        )
        assert request == api.EvidenceExport("/tmp/case.zip", since_ms=since, until_ms=until)


def test_a_good_request_decodes_with_its_defaults() -> None:
    request = api.decode_request("inbox", {"after": 5}, error=Bad)
    assert request == api.Inbox(after=5, limit=100, unread=False)
    assert api.encode(api.MarkRead(("ab",), None)) == {"ids": ["ab"], "contact": None}


def test_every_request_names_a_result_record() -> None:
    for method, cls in api.REQUESTS.items():
        assert method == cls.METHOD
        result = cls.RESULT
        if get_origin(result) is tuple:
            (result, _) = get_args(result)
        assert dataclasses.is_dataclass(result)


def test_results_decode_by_their_request() -> None:
    listed = api.decode_result(api.ContactList(), [{"name": "bob", "address": "y"}], error=Bad)
    assert listed == (api.Contact("bob", "y"),)
    queued = api.decode_result(
        api.SendText("bob", "hi"), {"id": "ab", "state": "queued"}, error=Bad
    )
    assert queued == api.Queued("ab", api.MessageState.QUEUED)
    with pytest.raises(Bad, match="'result' must be a list"):
        api.decode_result(api.Inbox(), {}, error=Bad)


def test_events_decode_by_their_topic() -> None:
    event = api.decode_event("tor", {"state": "restarting"}, error=Bad)
    assert event == api.TorStatus(api.TorState.RESTARTING)
    assert api.topic_of(event) == "tor"
    with pytest.raises(Bad, match="unknown event"):
        api.decode_event("gossip", {}, error=Bad)


def test_enums_are_their_strings_on_the_wire() -> None:
    wire = api.encode(MESSAGE)
    assert (wire["direction"], wire["kind"], wire["state"]) == ("in", "file", "received")
    status: Any = api.encode(api.MailboxStatus(api.Role.OWNER))
    assert json.loads(json.dumps(status))["role"] == "owner"
    with pytest.raises(Bad, match="'role' must be one of"):
        decode(api.MailboxStatus, {"role": "landlord"})


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"contact": "bob", "body": "x", "id": "ab" * 15}, "32 hex digits"),
        ({"contact": "bob", "body": "x", "id": "zz" * 16}, "32 hex digits"),
    ],
)
def test_a_send_s_id_is_16_bytes_in_hex(params: dict[str, object], problem: str) -> None:
    with pytest.raises(Bad, match=problem):
        api.decode_request("send_text", params, error=Bad)
    chosen = api.new_message_id()
    sent = api.decode_request("send_text", {"contact": "bob", "body": "x", "id": chosen}, error=Bad)
    assert sent == api.SendText("bob", "x", id=chosen)
    assert api.decode_request("send_text", {"contact": "bob", "body": "x"}, error=Bad) == (
        api.SendText("bob", "x")
    )


def test_the_doc_describes_every_record_results_and_events_are_made_of() -> None:
    documented = set(api.documented_records())
    assert {api.SetupCode, api.MailboxStatus, api.MailboxOwnerUsage, api.Wiped} <= documented
    assert {api.FileInfo, api.ContactStatus, api.TorStatus, api.PeerChange} <= documented


def test_message_states() -> None:
    assert {s for s in api.MessageState if s.failed} == {"expired", "refused"}
    assert {s for s in api.MessageState if s.delivered} == {"delivered", "read"}
    message = api.Message("a", "b", api.Direction.IN, api.Kind.TEXT, api.MessageState.READ, 1)
    assert message.read


def test_the_topics_a_type_checker_knows_are_the_events() -> None:
    from typing import get_args

    assert get_args(api.Topic) == tuple(api.EVENTS)


def test_the_list_bounds_of_the_api_are_the_limits() -> None:
    # api imports no limits (the client depends on it); the numbers must agree.
    from onionpost import limits

    assert api._MAX_LIST_MEMBERS == limits.MAX_LIST_MEMBERS
    assert api._MAX_GROUP_MEMBERS == limits.MAX_GROUP_MEMBERS
    assert api._MAX_TEXT_BODY == limits.MAX_TEXT_BODY
    assert api._MAX_GROUP_NAME == limits.MAX_GROUP_NAME
    assert api._MAX_LIST_SENDS_SHOWN == limits.MAX_LIST_SENDS_SHOWN
    assert api._MAX_TIME_MS == limits.MAX_TIME_MS


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("list_create", {"name": "team", "members": ["m"] * 257}),
        ("list_add", {"name": "team", "members": []}),
        ("list_remove", {"name": "team", "members": ["m"] * 257}),
        ("list_send_text", {"list": "team", "body": "x", "id": "zz"}),
        ("list_send_file", {"list": "team", "path": "relative/file"}),
        ("list_show", {}),
    ],
)
def test_bad_list_requests_are_refused_by_the_decoder(method: str, params: object) -> None:
    with pytest.raises(ValueError, match=method):
        api.decode_request(method, params, error=ValueError)
