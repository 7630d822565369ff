"""Handling labels: their syntax, their order, and the pure rules of policy
(``protocol-spec/spec.md`` §Handling labels).

Theory of operation
-------------------
Every text and file carries a label: a short ASCII string in the canonical
form of one scheme. Three kinds of scheme are known:

- **TLP 2.0** (FIRST, 2022): exactly ``TLP:CLEAR``, ``TLP:GREEN``,
  ``TLP:AMBER``, ``TLP:AMBER+STRICT`` or ``TLP:RED``, in that order, upper
  case, no spaces. ``TLP:WHITE`` (TLP 1.0) is refused, naming its successor.
- **CUI** (the US CUI banner, 32 CFR 2002 and the CUI Marking Handbook):
  ``CUI``, then optionally ``//`` and category markings separated by ``/``
  (``SP-`` for a specified category), then optionally ``//`` and limited
  dissemination controls separated by ``/``::

      CUI//SP-CTI/SP-EXPT//NOFORN
      CUI//PRVCY//FED ONLY
      CUI//REL TO USA, GBR

  ``CONTROLLED`` may stand for ``CUI`` (the canonical form says ``CUI``).
  CUI has one level; one CUI label is *at most* another when its categories
  and controls are a subset of the other's (it asks for no handling the
  other does not). Canonical form: specified categories first, then basic
  ones, each alphabetical; controls in the order of :data:`CUI_CONTROLS`.
- **Agency schemes** declared in ``config.toml`` (:class:`Scheme`): an
  ordered list of levels and a set of caveats, written
  ``NAME:LEVEL`` or ``NAME:LEVEL//CAVEAT/CAVEAT`` (caveats alphabetical in
  the canonical form), e.g. ``ACME:SENSITIVE//LES``.

A label is *at most* another (:func:`at_most`) only within one scheme: a
level no higher and caveats a subset. Labels of two schemes are never
ordered, and every rule below that needs an order fails closed on them.

The policy functions are pure (no store, no clock) and raise
:class:`~onionpost.errors.LabelError` with a :class:`LabelReason`:

- :func:`may_send`: a label against the limits a recipient accepts;
- :func:`may_forward`: a copy's label against its source's (never lower);
- :func:`check_audience`: TLP:RED stays with its named recipients, and
  TLP:AMBER+STRICT inside the organisation, for a direct send, a forward,
  a distribution list or a group (:class:`Via`);
- :func:`may_export`: what an evidence export may carry.

The label's bytes on the wire are its canonical text (UTF-8, which for a
valid label is ASCII): :func:`encode_label`. Decoding a record only bounds
the string; the receiver parses it with its own schemes, and a label it
cannot parse is kept as it came, shown as unknown, and fails closed on
every later operation (forward, list, export).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from onionpost.errors import LabelError, LabelReason
from onionpost.limits import MAX_LABEL, MAX_LABEL_CAVEATS, MAX_LABEL_LEVELS, MAX_LABEL_SCHEMES

__all__ = [
    "CUI",
    "CUI_CONTROLS",
    "DEFAULT_EXPORT_MAX",
    "DEFAULT_LABEL",
    "TLP",
    "TLP_LEVELS",
    "Label",
    "LabelError",
    "LabelPolicy",
    "LabelReason",
    "Labels",
    "Scheme",
    "Via",
    "at_most",
    "check_audience",
    "forward_via",
    "encode_label",
    "may_export",
    "may_forward",
    "may_send",
]

TLP: Final = "TLP"
CUI: Final = "CUI"
TLP_LEVELS: Final = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
#: The CUI limited dissemination controls, in canonical order. ``REL TO``
#: and ``DISPLAY ONLY`` are followed by a list of trigraphs.
CUI_CONTROLS: Final = ("NOFORN", "FED ONLY", "FEDCON", "NOCON", "DL ONLY", "REL TO", "DISPLAY ONLY")
_LISTED_CONTROLS: Final = ("REL TO", "DISPLAY ONLY")
_CUI_CATEGORY: Final = re.compile(r"(SP-)?[A-Z][A-Z0-9]{0,15}(-[A-Z0-9]{1,15})?")
_TRIGRAPHS: Final = re.compile(r"[A-Z]{3,4}(, [A-Z]{3,4}){0,31}")
_SCHEME_NAME: Final = re.compile(r"[A-Z][A-Z0-9-]{0,15}")
_TOKEN: Final = re.compile(r"[A-Z0-9][A-Z0-9+ -]{0,31}")
_CONTROLLED: Final = "CONTROLLED"
_RESERVED: Final = frozenset({TLP, CUI, _CONTROLLED})


def _bad(text: str, why: str, reason: LabelReason = LabelReason.MALFORMED) -> LabelError:
    return LabelError(f"label {text!r}: {why}", reason=reason, label=text[:MAX_LABEL])


@dataclass(frozen=True, slots=True)
class Scheme:
    """An agency's scheme from ``config.toml``: levels lowest first, caveats."""

    name: str
    levels: tuple[str, ...]
    caveats: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not _SCHEME_NAME.fullmatch(self.name) or self.name in _RESERVED:
            raise LabelError(
                "a label scheme's name is 1 to 16 of A-Z, 0-9 and '-', not TLP or CUI "
                f"(or CONTROLLED): {self.name!r}",
                reason=LabelReason.MALFORMED,
            )
        if not 1 <= len(self.levels) <= MAX_LABEL_LEVELS or len(set(self.levels)) != len(
            self.levels
        ):
            raise LabelError(
                f"scheme {self.name}: 1 to {MAX_LABEL_LEVELS} distinct levels",
                reason=LabelReason.MALFORMED,
            )
        if len(self.caveats) > MAX_LABEL_CAVEATS:
            raise LabelError(
                f"scheme {self.name}: at most {MAX_LABEL_CAVEATS} caveats",
                reason=LabelReason.MALFORMED,
            )
        for token in (*self.levels, *self.caveats):
            if not _TOKEN.fullmatch(token) or token.endswith(" "):
                raise LabelError(
                    f"scheme {self.name}: {token!r} is not 1 to 32 of A-Z, 0-9, '+', '-', ' '",
                    reason=LabelReason.MALFORMED,
                )


@dataclass(frozen=True, slots=True)
class Label:
    """A parsed label. ``text`` is its canonical form; ``level`` its rank in
    its scheme (0 for CUI); ``caveats`` the CUI categories and controls, or
    an agency scheme's caveats."""

    scheme: str
    level: int
    caveats: frozenset[str]
    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def is_red(self) -> bool:
        return self.scheme == TLP and self.level == TLP_LEVELS.index("RED")

    @property
    def is_amber_strict(self) -> bool:
        return self.scheme == TLP and self.level == TLP_LEVELS.index("AMBER+STRICT")


def encode_label(label: Label) -> str:
    """The label as it goes on the wire and into digests: its canonical text."""
    return label.text


def at_most(lower: Label, upper: Label) -> bool:
    """``lower`` asks for no handling ``upper`` does not: same scheme, a
    level no higher, caveats a subset. Labels of two schemes: False."""
    return (
        lower.scheme == upper.scheme
        and lower.level <= upper.level
        and lower.caveats <= upper.caveats
    )


class Labels:
    """The schemes an endpoint knows: TLP, CUI, and its agency schemes."""

    def __init__(self, schemes: Iterable[Scheme] = ()) -> None:
        found: dict[str, Scheme] = {}
        for scheme in schemes:
            if scheme.name in found:
                raise LabelError(
                    f"label scheme {scheme.name} is declared twice", reason=LabelReason.MALFORMED
                )
            found[scheme.name] = scheme
        if len(found) > MAX_LABEL_SCHEMES:
            raise LabelError(
                f"at most {MAX_LABEL_SCHEMES} label schemes", reason=LabelReason.MALFORMED
            )
        self.schemes: Mapping[str, Scheme] = found

    def __repr__(self) -> str:
        return f"Labels({sorted(self.schemes)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Labels) and dict(self.schemes) == dict(other.schemes)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.schemes)))

    def parse(self, text: object) -> Label:
        """The label ``text`` names; :class:`LabelError` (MALFORMED,
        UNKNOWN_SCHEME, UNKNOWN_LEVEL) for anything else. Wire example::

            TLP:AMBER+STRICT
        """
        if not isinstance(text, str):
            raise LabelError("a label is text", reason=LabelReason.MALFORMED)
        if not text or len(text) > MAX_LABEL or not text.isascii() or not text.isprintable():
            raise _bad(text, f"1 to {MAX_LABEL} printable ASCII characters")
        if text == CUI or text.startswith(CUI + "//"):
            return _parse_cui(text)
        # The Marking Handbook allows CONTROLLED for CUI in a banner.
        if text == _CONTROLLED or text.startswith(_CONTROLLED + "//"):
            return _parse_cui(CUI + text[len(_CONTROLLED) :])
        upper = text.upper()
        if upper in (CUI, _CONTROLLED) or upper.startswith((CUI + "//", _CONTROLLED + "//")):
            raise _bad(text, f"labels are in upper case ({upper!r}?)")
        scheme, colon, rest = text.partition(":")
        if not colon:
            raise _bad(text, "no scheme (TLP:..., CUI//..., or NAME:LEVEL)")
        if scheme == TLP:
            return _parse_tlp(text, rest)
        known = self.schemes.get(scheme)
        if known is None:
            hint = ""
            if scheme != scheme.upper() and (
                scheme.upper() == TLP or scheme.upper() in self.schemes
            ):
                hint = f": schemes are in upper case ({upper!r}?)"
            raise _bad(text, f"unknown scheme {scheme!r}{hint}", LabelReason.UNKNOWN_SCHEME)
        return _parse_agency(text, known, rest)


def _parse_tlp(text: str, level: str) -> Label:
    if level == "WHITE":
        raise _bad(text, "TLP 1.0's WHITE is TLP:CLEAR in TLP 2.0", LabelReason.UNKNOWN_LEVEL)
    if level not in TLP_LEVELS:
        raise _bad(
            text, f"TLP levels are {', '.join(TLP_LEVELS)} (upper case)", LabelReason.UNKNOWN_LEVEL
        )
    return Label(TLP, TLP_LEVELS.index(level), frozenset(), f"{TLP}:{level}")


def _cui_control(text: str, token: str) -> str:
    if token in CUI_CONTROLS and token not in _LISTED_CONTROLS:
        return token
    for listed in _LISTED_CONTROLS:
        if token.startswith(listed + " ") and _TRIGRAPHS.fullmatch(token[len(listed) + 1 :]):
            return token
    raise _bad(text, f"{token!r} is not a CUI dissemination control", LabelReason.UNKNOWN_LEVEL)


def _control_rank(token: str) -> int:
    for n, control in enumerate(CUI_CONTROLS):
        if token == control or token.startswith(control + " "):
            return n
    raise AssertionError(token)  # pragma: no cover - checked by _cui_control


def _is_control(token: str) -> bool:
    return any(token == c or token.startswith(c + " ") for c in CUI_CONTROLS)


def _parse_cui(text: str) -> Label:
    parts = text.split("//")
    if len(parts) > 3 or any(not p for p in parts[1:]):
        raise _bad(text, "CUI[//CATEGORY/...][//CONTROL/...]")
    categories: list[str] = []
    controls: list[str] = []
    groups = [p.split("/") for p in parts[1:]]
    if len(groups) == 2:
        categories, controls = groups
    elif groups:
        # One group: controls if its first token is one, else categories.
        if _is_control(groups[0][0]):
            controls = groups[0]
        else:
            categories = groups[0]
    for token in categories:
        if not _CUI_CATEGORY.fullmatch(token) or _is_control(token):
            raise _bad(text, f"{token!r} is not a CUI category marking")
    checked = [_cui_control(text, token) for token in controls]
    ranks = [_control_rank(t) for t in checked]
    if len(set(categories)) != len(categories) or len(set(ranks)) != len(ranks):
        raise _bad(text, "a marking appears twice")
    if "NOFORN" in checked and any(t.startswith("REL TO") for t in checked):
        raise _bad(text, "NOFORN and REL TO exclude each other")
    if len(categories) + len(checked) > MAX_LABEL_CAVEATS:
        raise _bad(text, "too many markings")
    specified = sorted(c for c in categories if c.startswith("SP-"))
    basic = sorted(c for c in categories if not c.startswith("SP-"))
    ordered_controls = sorted(checked, key=_control_rank)
    canonical = CUI
    if categories:
        canonical += "//" + "/".join(specified + basic)
    if checked:
        canonical += "//" + "/".join(ordered_controls)
    return Label(CUI, 0, frozenset(categories) | frozenset(checked), canonical)


def _parse_agency(text: str, scheme: Scheme, rest: str) -> Label:
    level, _, caveat_text = rest.partition("//")
    if level not in scheme.levels:
        raise _bad(
            text,
            f"scheme {scheme.name} has levels {', '.join(scheme.levels)}",
            LabelReason.UNKNOWN_LEVEL,
        )
    caveats = caveat_text.split("/") if caveat_text else []
    if "//" in caveat_text or rest.endswith("//"):
        raise _bad(text, f"{scheme.name}:LEVEL[//CAVEAT/...]")
    for caveat in caveats:
        if caveat not in scheme.caveats:
            raise _bad(
                text, f"scheme {scheme.name} has no caveat {caveat!r}", LabelReason.UNKNOWN_LEVEL
            )
    if len(set(caveats)) != len(caveats):
        raise _bad(text, "a caveat appears twice")
    canonical = f"{scheme.name}:{level}"
    if caveats:
        canonical += "//" + "/".join(sorted(caveats))
    return Label(scheme.name, scheme.levels.index(level), frozenset(caveats), canonical)


# -- policy (pure) -----------------------------------------------------------------------


def may_send(
    label: Label,
    limits: Sequence[Label],
    *,
    ours: Sequence[Label] = (),
    recipient: str = "the recipient",
) -> None:
    """Refuse ``label`` for a recipient that accepts at most ``limits`` (its
    advertised limit) and that we send at most ``ours`` (the limit set here);
    none of either: anything. A label of a scheme no limit names is refused
    when there are limits (fail closed). Above a limit, the refusal says
    whose: the recipient's first, else ours."""
    every = (*limits, *ours)
    if every and not any(limit.scheme == label.scheme for limit in every):
        accepted = ", ".join(sorted({str(limit) for limit in every}))
        raise LabelError(
            f"{recipient} accepts up to {accepted}, no {label.scheme} labels",
            reason=LabelReason.NOT_ACCEPTED,
            label=label.text,
        )
    for whose, said in ((limits, "accepts up to"), (ours, "is sent nothing above")):
        for limit in whose:
            if limit.scheme == label.scheme and not at_most(label, limit):
                where = "" if whose is limits else " from here"
                raise LabelError(
                    f"{recipient} {said} {limit}{where}",
                    reason=LabelReason.ABOVE_LIMIT,
                    label=label.text,
                )


def may_forward(source: Label, new: Label) -> None:
    """A copy keeps or raises its source's label, never lowers it (nor
    moves it to another scheme)."""
    if not at_most(source, new):
        why = (
            f"a copy keeps its label's scheme ({source.scheme})"
            if source.scheme != new.scheme
            else "a label may be kept or raised, never lowered"
        )
        raise LabelError(
            f"a copy of a {source} message cannot be labelled {new}: {why}",
            reason=LabelReason.LOWERED,
            label=new.text,
        )


class Via(enum.Enum):
    """How a copy reaches its recipients (the audience rules differ)."""

    DIRECT = "direct"  # a new message to named contacts
    FORWARD = "forward"  # a received (or sent) message sent on
    LIST = "list"  # a distribution list: the sender did not name each recipient
    GROUP = "group"  # a group conversation


def forward_via(source: Label | None) -> Via:
    """How a forward's audience is judged: a TLP:RED source goes back only to
    its audience (:attr:`Via.FORWARD`); any other source, raised to RED by the
    forward, is a new RED message to the recipient the forwarder names
    (:attr:`Via.DIRECT`)."""
    return Via.FORWARD if source is not None and source.is_red else Via.DIRECT


def check_audience(
    label: Label,
    recipients: Collection[str],
    *,
    via: Via,
    audience: Collection[str] | None = None,
    home_org: str | None = None,
    orgs: Mapping[str, str | None] | None = None,
) -> None:
    """The audience rules for sending ``label`` to ``recipients``.

    - TLP:RED goes only to its named recipients. A forward goes only to
      those already in ``audience`` (the source's sender and recipients). A
      list or group send with no ``audience`` (a new message: a list's
      members are not named by its sender) is refused; with one (a RED
      message sent on within the list or group that was its audience) every
      recipient must be in it.
    - TLP:AMBER+STRICT stays inside the organisation: when ``home_org`` (ours,
      as endorsements say) is known, every recipient's organisation
      (``orgs``; unknown counts as outside) must be it.
    """
    if label.is_red:
        if via in (Via.LIST, Via.GROUP) and audience is None:
            raise LabelError(
                f"TLP:RED goes only to named recipients, not to a {via.value}",
                reason=LabelReason.OUTSIDE_AUDIENCE,
                label=label.text,
            )
        if via is not Via.DIRECT:
            outside = sorted(set(recipients) - set(audience or ()))
            if outside:
                raise LabelError(
                    f"TLP:RED goes only to its named recipients; {', '.join(outside)} was not one",
                    reason=LabelReason.OUTSIDE_AUDIENCE,
                    label=label.text,
                )
    if label.is_amber_strict and home_org is not None:
        known = orgs or {}
        outside = sorted(r for r in recipients if known.get(r) != home_org)
        if outside:
            raise LabelError(
                f"TLP:AMBER+STRICT stays inside {home_org}; {', '.join(outside)} is not "
                "known to be in it",
                reason=LabelReason.OUTSIDE_ORGANISATION,
                label=label.text,
            )


def may_export(label: Label, export_max: Sequence[Label]) -> None:
    """An evidence export carries labels no higher than ``export_max`` (one
    per scheme; a scheme without one exports freely); TLP:RED never leaves
    in an export, whose readers were not named by its sender."""
    if label.is_red:
        raise LabelError(
            "TLP:RED is not exported: its readers are named by its sender",
            reason=LabelReason.NOT_EXPORTABLE,
            label=label.text,
        )
    for limit in export_max:
        if limit.scheme == label.scheme and not at_most(label, limit):
            raise LabelError(
                f"policy exports up to {limit}, not {label}",
                reason=LabelReason.NOT_EXPORTABLE,
                label=label.text,
            )


# -- an endpoint's policy, from its configuration -------------------------------------------

#: The label of a message sent without ``--label`` when ``labels.default`` is
#: not configured: limited disclosure, so that a forgotten label errs on the
#: side of care.
DEFAULT_LABEL: Final = "TLP:AMBER"
#: The highest label of a scheme an evidence export carries, unless configured.
DEFAULT_EXPORT_MAX: Final = ("TLP:AMBER+STRICT",)
_UNKNOWN: Final = "?"


@dataclass(frozen=True, slots=True)
class LabelPolicy:
    """What ``config.toml``'s ``[labels]`` table says: the schemes known, the
    default label, the highest we accept (advertised in LabelLimit), the
    highest an export carries, and our organisation when endorsements say it."""

    labels: Labels
    default: Label
    accept: tuple[Label, ...] = ()
    export_max: tuple[Label, ...] = ()
    organisation: str | None = None

    @classmethod
    def build(
        cls,
        *,
        default: str = DEFAULT_LABEL,
        accept: Sequence[str] = (),
        export_max: Sequence[str] = DEFAULT_EXPORT_MAX,
        schemes: Iterable[Scheme] = (),
        organisation: str | None = None,
    ) -> LabelPolicy:
        labels = Labels(schemes)
        return cls(
            labels,
            labels.parse(default),
            _one_per_scheme(labels, accept, "labels.accept"),
            _one_per_scheme(labels, export_max, "labels.export_max"),
            organisation,
        )

    def label(self, text: str | None) -> Label:
        """The label a new message carries: ``text`` parsed, or the default."""
        return self.default if text is None else self.labels.parse(text)

    def limits(self, texts: Iterable[str]) -> tuple[Label, ...]:
        """Stored limits as labels. One this endpoint cannot parse (another
        agency's scheme) stays a limit that no label of ours is under."""
        found = []
        for text in texts:
            try:
                found.append(self.labels.parse(text))
            except LabelError:
                found.append(Label(_UNKNOWN, -1, frozenset(), text))
        return tuple(found)

    def known(self, text: str) -> Label:
        """A stored message's label, parsed; an unlabelled or unknown one is
        :class:`LabelError`: every rule that would copy it on fails closed."""
        if not text:
            raise LabelError(
                "the message carries no label (an earlier sender's): it is not sent on",
                reason=LabelReason.UNKNOWN_SCHEME,
            )
        return self.labels.parse(text)


def _one_per_scheme(labels: Labels, texts: Sequence[str], key: str) -> tuple[Label, ...]:
    parsed = tuple(labels.parse(text) for text in texts)
    schemes = [label.scheme for label in parsed]
    if len(set(schemes)) != len(schemes):
        raise LabelError(f"{key}: one label per scheme", reason=LabelReason.MALFORMED)
    return parsed
