"""Handling labels: syntax, order and the pure policy rules, as tables, and
properties over random sequences of sends, forwards, lists and exports."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import ConfigError, LabelError, LabelReason
from onionpost.proto.labels import (
    Label,
    Labels,
    Scheme,
    Via,
    at_most,
    check_audience,
    forward_via,
    may_export,
    may_forward,
    may_send,
)

ACME = Scheme("ACME", ("PUBLIC", "INTERNAL", "SENSITIVE"), frozenset({"LES", "NOPRESS"}))
LABELS = Labels([ACME])


def p(text: str) -> Label:
    return LABELS.parse(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("TLP:CLEAR", "TLP:CLEAR"),
        ("TLP:GREEN", "TLP:GREEN"),
        ("TLP:AMBER", "TLP:AMBER"),
        ("TLP:AMBER+STRICT", "TLP:AMBER+STRICT"),
        ("TLP:RED", "TLP:RED"),
        ("CUI", "CUI"),
        ("CUI//SP-CTI", "CUI//SP-CTI"),
        ("CUI//NOFORN", "CUI//NOFORN"),
        ("CUI//SP-EXPT/SP-CTI//NOFORN", "CUI//SP-CTI/SP-EXPT//NOFORN"),
        ("CUI//PRVCY/SP-CTI", "CUI//SP-CTI/PRVCY"),
        ("CUI//PRVCY//FED ONLY", "CUI//PRVCY//FED ONLY"),
        ("CUI//REL TO USA, GBR", "CUI//REL TO USA, GBR"),
        ("CONTROLLED", "CUI"),
        ("CONTROLLED//SP-CTI//NOFORN", "CUI//SP-CTI//NOFORN"),
        ("CUI//SP-CTI//DL ONLY/NOFORN", "CUI//SP-CTI//NOFORN/DL ONLY"),
        ("ACME:SENSITIVE", "ACME:SENSITIVE"),
        ("ACME:SENSITIVE//NOPRESS/LES", "ACME:SENSITIVE//LES/NOPRESS"),
    ],
)
def test_parse_canonical(text: str, canonical: str) -> None:
    label = p(text)
    assert label.text == canonical
    assert p(canonical) == label  # canonical form parses to itself


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", LabelReason.MALFORMED),
        ("tlp:amber", LabelReason.UNKNOWN_SCHEME),  # TLP is upper case
        ("TLP:amber", LabelReason.UNKNOWN_LEVEL),
        ("TLP:WHITE", LabelReason.UNKNOWN_LEVEL),
        ("TLP:AMBER+", LabelReason.UNKNOWN_LEVEL),
        ("TLP: RED", LabelReason.UNKNOWN_LEVEL),
        ("TLP:RED\n", LabelReason.MALFORMED),
        ("TLP:RÉD", LabelReason.MALFORMED),
        ("AMBER", LabelReason.MALFORMED),
        ("CUI//", LabelReason.MALFORMED),
        ("CUI///NOFORN", LabelReason.MALFORMED),
        ("CUI//SP-CTI//NOFORN//X", LabelReason.MALFORMED),
        ("CUI//sp-cti", LabelReason.MALFORMED),
        ("CUI//SP-CTI/NOFORN", LabelReason.MALFORMED),  # a control among categories
        ("CUI//SP-CTI//SECRET", LabelReason.UNKNOWN_LEVEL),
        ("CUI//NOFORN/REL TO USA", LabelReason.MALFORMED),
        ("CUI//NOFORN/NOFORN", LabelReason.MALFORMED),
        ("CUI//REL TO usa", LabelReason.UNKNOWN_LEVEL),
        ("CUIX", LabelReason.MALFORMED),
        ("ACME:SECRET", LabelReason.UNKNOWN_LEVEL),
        ("ACME:SENSITIVE//FOUO", LabelReason.UNKNOWN_LEVEL),
        ("ACME:SENSITIVE//LES/LES", LabelReason.MALFORMED),
        ("ACME:SENSITIVE//", LabelReason.MALFORMED),
        ("OTHER:ANY", LabelReason.UNKNOWN_SCHEME),
        ("X" * 300, LabelReason.MALFORMED),
    ],
)
def test_parse_refused(text: str, reason: LabelReason) -> None:
    with pytest.raises(LabelError) as info:
        p(text)
    assert info.value.reason is reason
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "tlp:red",
            "label 'tlp:red': unknown scheme 'tlp': schemes are in upper case ('TLP:RED'?)",
        ),
        ("Acme:LOW", "label 'Acme:LOW': unknown scheme 'Acme': schemes are in upper case"),
        ("cui//sp-cti", "label 'cui//sp-cti': labels are in upper case ('CUI//SP-CTI'?)"),
        ("controlled", "label 'controlled': labels are in upper case ('CONTROLLED'?)"),
        ("other:any", "label 'other:any': unknown scheme 'other'"),
    ],
)
def test_a_label_in_lower_case_says_labels_are_upper_case(text: str, says: str) -> None:
    with pytest.raises(LabelError) as info:
        p(text)
    assert str(info.value).startswith(says)
    assert str(info.value).endswith("'other'") or "upper case" in str(info.value)


def test_parse_refuses_non_text() -> None:
    with pytest.raises(LabelError):
        LABELS.parse(3)


@pytest.mark.parametrize(
    ("name", "levels", "caveats"),
    [
        ("TLP", ("A",), ()),
        ("CUI", ("A",), ()),
        ("acme", ("A",), ()),
        ("ACME", (), ()),
        ("ACME", ("A", "A"), ()),
        ("ACME", ("a",), ()),
        ("ACME", ("A",), ("x/y",)),
        ("ACME", ("A" * 40,), ()),
    ],
)
def test_scheme_refused(name: str, levels: tuple[str, ...], caveats: tuple[str, ...]) -> None:
    with pytest.raises(LabelError):
        Scheme(name, levels, frozenset(caveats))


def test_scheme_declared_twice() -> None:
    with pytest.raises(LabelError):
        Labels([ACME, ACME])


@pytest.mark.parametrize(
    ("lower", "upper", "expected"),
    [
        ("TLP:CLEAR", "TLP:RED", True),
        ("TLP:AMBER", "TLP:AMBER+STRICT", True),
        ("TLP:AMBER+STRICT", "TLP:AMBER", False),
        ("TLP:RED", "TLP:RED", True),
        ("CUI", "CUI//SP-CTI", True),
        ("CUI//SP-CTI", "CUI", False),
        ("CUI//SP-CTI", "CUI//SP-CTI//NOFORN", True),
        ("CUI//SP-CTI", "CUI//SP-EXPT", False),
        ("CUI//REL TO USA, GBR", "CUI//REL TO USA", False),
        ("ACME:INTERNAL", "ACME:SENSITIVE", True),
        ("ACME:SENSITIVE//LES", "ACME:SENSITIVE", False),
        ("ACME:INTERNAL//LES", "ACME:SENSITIVE//LES/NOPRESS", True),
        ("TLP:CLEAR", "CUI", False),  # two schemes are never ordered
        ("CUI", "TLP:RED", False),
    ],
)
def test_at_most(lower: str, upper: str, expected: bool) -> None:
    assert at_most(p(lower), p(upper)) is expected


@pytest.mark.parametrize(
    ("label", "limits", "reason", "message"),
    [
        ("TLP:AMBER", [], None, ""),
        ("TLP:AMBER", ["TLP:AMBER"], None, ""),
        ("TLP:GREEN", ["TLP:AMBER", "CUI"], None, ""),
        ("TLP:RED", ["TLP:AMBER"], LabelReason.ABOVE_LIMIT, "bob accepts up to TLP:AMBER"),
        ("TLP:AMBER", ["TLP:RED", "TLP:GREEN"], LabelReason.ABOVE_LIMIT, "up to TLP:GREEN"),
        ("CUI//SP-CTI", ["TLP:RED"], LabelReason.NOT_ACCEPTED, "no CUI labels"),
        ("CUI//SP-CTI", ["CUI//SP-CTI//NOFORN"], None, ""),
        ("CUI//SP-EXPT", ["CUI//SP-CTI"], LabelReason.ABOVE_LIMIT, "up to CUI//SP-CTI"),
    ],
)
def test_may_send(label: str, limits: list[str], reason: LabelReason | None, message: str) -> None:
    if reason is None:
        may_send(p(label), [p(x) for x in limits], recipient="bob")
        return
    with pytest.raises(LabelError) as info:
        may_send(p(label), [p(x) for x in limits], recipient="bob")
    assert info.value.reason is reason
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("label", "theirs", "ours", "reason", "message"),
    [
        ("TLP:AMBER", [], ["TLP:AMBER"], None, ""),
        (
            "TLP:RED",
            [],
            ["TLP:AMBER"],
            LabelReason.ABOVE_LIMIT,
            "bob is sent nothing above TLP:AMBER from here",
        ),
        # Both refuse it: the recipient's limit is the one said.
        (
            "TLP:RED",
            ["TLP:GREEN"],
            ["TLP:AMBER"],
            LabelReason.ABOVE_LIMIT,
            "bob accepts up to TLP:GREEN",
        ),
        (
            "TLP:AMBER",
            ["TLP:RED"],
            ["TLP:GREEN"],
            LabelReason.ABOVE_LIMIT,
            "above TLP:GREEN from here",
        ),
        # A scheme that only our limit names is a scheme some limit names.
        ("CUI//SP-CTI", ["TLP:RED"], ["CUI//SP-CTI"], None, ""),
        ("CUI//SP-CTI", [], ["TLP:RED"], LabelReason.NOT_ACCEPTED, "no CUI labels"),
    ],
)
def test_may_send_says_whose_limit(
    label: str, theirs: list[str], ours: list[str], reason: LabelReason | None, message: str
) -> None:
    limits, own = [p(x) for x in theirs], [p(x) for x in ours]
    if reason is None:
        may_send(p(label), limits, ours=own, recipient="bob")
        return
    with pytest.raises(LabelError) as info:
        may_send(p(label), limits, ours=own, recipient="bob")
    assert info.value.reason is reason
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("source", "new", "ok"),
    [
        ("TLP:AMBER", "TLP:AMBER", True),
        ("TLP:AMBER", "TLP:RED", True),
        ("TLP:AMBER", "TLP:GREEN", False),
        ("TLP:AMBER+STRICT", "TLP:AMBER", False),
        ("CUI//SP-CTI", "CUI", False),
        ("CUI//SP-CTI", "CUI//SP-CTI//NOFORN", True),
        ("TLP:AMBER", "CUI", False),
        ("ACME:INTERNAL", "ACME:SENSITIVE//LES", True),
        ("ACME:SENSITIVE//LES", "ACME:SENSITIVE", False),
    ],
)
def test_may_forward(source: str, new: str, ok: bool) -> None:
    if ok:
        may_forward(p(source), p(new))
    else:
        with pytest.raises(LabelError) as info:
            may_forward(p(source), p(new))
        assert info.value.reason is LabelReason.LOWERED


@pytest.mark.parametrize(
    ("label", "recipients", "via", "audience", "home_org", "orgs", "reason"),
    [
        ("TLP:RED", ["bob"], Via.DIRECT, None, None, None, None),
        ("TLP:RED", ["bob", "carol"], Via.DIRECT, None, None, None, None),
        ("TLP:RED", ["bob"], Via.LIST, None, None, None, LabelReason.OUTSIDE_AUDIENCE),
        ("TLP:RED", ["bob"], Via.GROUP, None, None, None, LabelReason.OUTSIDE_AUDIENCE),
        ("TLP:RED", ["bob", "carol"], Via.GROUP, ["bob", "carol"], None, None, None),
        ("TLP:RED", ["bob", "dave"], Via.LIST, ["bob"], None, None, LabelReason.OUTSIDE_AUDIENCE),
        ("TLP:RED", ["carol"], Via.FORWARD, ["bob"], None, None, LabelReason.OUTSIDE_AUDIENCE),
        ("TLP:RED", ["bob"], Via.FORWARD, ["bob"], None, None, None),
        ("TLP:RED", ["carol"], Via.FORWARD, None, None, None, LabelReason.OUTSIDE_AUDIENCE),
        # forward_via: a source raised to RED by the forward is judged as a direct send.
        ("TLP:RED", ["carol"], forward_via(None), ["bob"], None, None, None),
        ("TLP:AMBER", ["carol"], Via.LIST, None, None, None, None),
        ("TLP:AMBER+STRICT", ["carol"], Via.LIST, None, None, None, None),
        ("TLP:AMBER+STRICT", ["carol"], Via.FORWARD, None, "acme", {"carol": "acme"}, None),
        (
            "TLP:AMBER+STRICT",
            ["carol", "dave"],
            Via.FORWARD,
            None,
            "acme",
            {"carol": "acme", "dave": "other"},
            LabelReason.OUTSIDE_ORGANISATION,
        ),
        (
            "TLP:AMBER+STRICT",
            ["erin"],
            Via.LIST,
            None,
            "acme",
            {},
            LabelReason.OUTSIDE_ORGANISATION,
        ),
        ("TLP:AMBER", ["erin"], Via.LIST, None, "acme", {}, None),
    ],
)
def test_check_audience(
    label: str,
    recipients: list[str],
    via: Via,
    audience: list[str] | None,
    home_org: str | None,
    orgs: dict[str, str | None] | None,
    reason: LabelReason | None,
) -> None:
    def run() -> None:
        check_audience(
            p(label), recipients, via=via, audience=audience, home_org=home_org, orgs=orgs
        )

    if reason is None:
        run()
    else:
        with pytest.raises(LabelError) as info:
            run()
        assert info.value.reason is reason


@pytest.mark.parametrize(
    ("label", "limits", "ok"),
    [
        ("TLP:AMBER", [], True),
        ("TLP:RED", [], False),
        ("TLP:AMBER+STRICT", ["TLP:AMBER"], False),
        ("TLP:GREEN", ["TLP:AMBER"], True),
        ("CUI//SP-CTI", ["TLP:AMBER"], True),
        ("CUI//SP-CTI", ["CUI"], False),
    ],
)
def test_may_export(label: str, limits: list[str], ok: bool) -> None:
    if ok:
        may_export(p(label), [p(x) for x in limits])
    else:
        with pytest.raises(LabelError) as info:
            may_export(p(label), [p(x) for x in limits])
        assert info.value.reason is LabelReason.NOT_EXPORTABLE


# -- properties ---------------------------------------------------------------------------

ALL = [
    "TLP:CLEAR",
    "TLP:GREEN",
    "TLP:AMBER",
    "TLP:AMBER+STRICT",
    "TLP:RED",
    "CUI",
    "CUI//SP-CTI",
    "CUI//SP-CTI//NOFORN",
    "CUI//NOFORN",
    "ACME:PUBLIC",
    "ACME:SENSITIVE",
    "ACME:SENSITIVE//LES",
]
PEOPLE = ["bob", "carol", "dave", "erin"]
labels_ = st.sampled_from(ALL).map(p)


@given(labels_, labels_, labels_)
def test_order_is_a_partial_order(a: Label, b: Label, c: Label) -> None:
    assert at_most(a, a)
    if at_most(a, b) and at_most(b, a):
        assert a == b
    if at_most(a, b) and at_most(b, c):
        assert at_most(a, c)


@given(st.text(max_size=40))
def test_parse_anything_is_a_label_or_label_error(text: str) -> None:
    try:
        label = LABELS.parse(text)
    except LabelError:
        return
    assert LABELS.parse(label.text) == label


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, int, str | None, list[str]]]:
    ops = []
    for _ in range(draw(st.integers(1, 25))):
        op = draw(st.sampled_from(["send", "forward", "list", "group", "export"]))
        ops.append(
            (
                op,
                draw(st.integers(0, 100)),
                draw(st.none() | st.sampled_from(ALL)),
                draw(st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3, unique=True)),
            )
        )
    return ops


@settings(max_examples=300)
@given(operations(), st.none() | st.sampled_from(["acme"]))
def test_no_sequence_lowers_a_label_or_lets_red_out(
    ops: list[tuple[str, int, str | None, list[str]]], home_org: str | None
) -> None:
    """Every copy the rules let through carries a label at least its
    source's, and a TLP:RED copy reaches only its source's audience."""
    orgs = {"bob": "acme", "carol": "acme", "dave": "other", "erin": None}
    copies: list[tuple[Label, frozenset[str], Label | None, frozenset[str] | None]] = []
    for op, pick, new_text, recipients in ops:
        if op in ("send", "list", "group") or not copies:
            if new_text is None:
                continue
            label = p(new_text)
            via = {"send": Via.DIRECT, "list": Via.LIST, "group": Via.GROUP}.get(op, Via.DIRECT)
            try:
                check_audience(label, recipients, via=via, home_org=home_org, orgs=orgs)
            except LabelError:
                continue
            assert not (label.is_red and via in (Via.LIST, Via.GROUP))
            copies.append((label, frozenset(recipients), None, None))
            continue
        source, audience, _, _ = copies[pick % len(copies)]
        if op == "export":
            try:
                may_export(source, [p("TLP:AMBER+STRICT")])
            except LabelError:
                assert source.is_red
            continue
        label = source if new_text is None else p(new_text)
        # Sent on: forwarded, or within the list or group that was its audience.
        via = (Via.FORWARD, Via.LIST, Via.GROUP)[pick % 3]
        try:
            may_forward(source, label)
            check_audience(
                label,
                recipients,
                via=via,
                audience=audience,
                home_org=home_org,
                orgs=orgs,
            )
        except LabelError:
            continue
        copies.append((label, audience | frozenset(recipients), source, audience))
    for label, reached, source, audience in copies:
        if source is None or audience is None:
            continue
        assert at_most(source, label)
        if label.is_red:
            assert reached == audience


def test_forward_via_judges_a_red_source_by_its_audience_and_a_raise_as_direct() -> None:
    labels = Labels(())
    assert forward_via(labels.parse("TLP:RED")) is Via.FORWARD
    assert forward_via(labels.parse("TLP:AMBER")) is Via.DIRECT
    assert forward_via(None) is Via.DIRECT
