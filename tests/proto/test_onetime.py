"""One-time codes of both kinds (a mailbox's setup code, a registrar's
enrolment code) through their one type: the same text form after each
kind's prefix, each kind's own errors, and a code refused to the home it names."""

from __future__ import annotations

import pytest

from onionpost.errors import ConfigError
from onionpost.proto.address import OnionAddress
from onionpost.proto.pairing import SETUP_PREFIX, SetupCode
from onionpost.proto.registrar import ENROL_PREFIX, EnrolmentCode

SERVICE = OnionAddress(bytes(range(32)))
HOLDER = OnionAddress(bytes(range(32, 64)))
SECRET = bytes(range(100, 132))


@pytest.mark.parametrize(
    ("kind", "prefix"), [(SetupCode, SETUP_PREFIX), (EnrolmentCode, ENROL_PREFIX)]
)
def test_both_kinds_share_the_text_after_their_prefix(
    kind: type[SetupCode] | type[EnrolmentCode], prefix: str
) -> None:
    code = kind(SERVICE, SECRET)
    assert code.service == SERVICE
    assert code.to_text().startswith(prefix)
    body = code.to_text()[len(prefix) :]
    assert body == SetupCode(SERVICE, SECRET).to_text()[len(SETUP_PREFIX) :]
    assert kind.parse(code.to_text()) == code
    assert SECRET.hex() not in repr(code)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        (SetupCode, "that setup code is this endpoint's own address"),
        (EnrolmentCode, "that enrolment code names this endpoint's own address"),
    ],
)
def test_a_code_naming_its_holder_is_refused(
    kind: type[SetupCode] | type[EnrolmentCode], match: str
) -> None:
    text = kind(SERVICE, SECRET).to_text()
    assert kind.parse_for(text, HOLDER) == kind(SERVICE, SECRET)
    with pytest.raises(ConfigError, match=match):
        kind.parse_for(text, SERVICE)
    # A code that does not read says so first, whoever holds it.
    with pytest.raises(ConfigError, match="must start with"):
        kind.parse_for("onionpost-other1:" + text.split(":", 1)[1], SERVICE)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        (SetupCode, "a setup code's secret is 32 bytes"),
        (EnrolmentCode, "an enrolment code's secret is 32 bytes"),
    ],
)
def test_a_secret_of_another_length_is_refused(
    kind: type[SetupCode] | type[EnrolmentCode], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        kind(SERVICE, SECRET[:31])
