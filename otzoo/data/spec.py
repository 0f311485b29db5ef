"""Pair specs ("3-5") parsed once, with one clear error for every malformed form.

Each kind of pair is one row of `PAIR_KINDS`: a full-match regex, a builder that turns the match
into a `PairSpec` (and may refuse it with a `DataError`), and the human-readable form quoted in
error messages. A new kind ("noise-5", "w2:16") is one more row, added with `register_pair_kind`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from otzoo.errors import DataError


@dataclass(frozen=True)
class PairSpec:
    """A source -> target pair as the user named it."""

    raw: str  # the text as given, e.g. "3-5"
    kind: str  # "digits": real digits of one class -> real digits of another
    source: int  # source digit
    target: int  # target digit


Builder = Callable[[re.Match[str], str], PairSpec]


@dataclass(frozen=True)
class PairKind:
    """One accepted spec form: how to recognise it, build it, and describe it in errors."""

    pattern: re.Pattern[str]
    build: Builder
    form: str  # e.g. "A-B with two different digits 0-9, e.g. 3-5"


DIGITS_FORM = "A-B with two different digits 0-9, e.g. 3-5"


def _build_digits(m: re.Match[str], raw: str) -> PairSpec:
    source, target = int(m.group(1)), int(m.group(2))
    if source == target:
        raise DataError(
            f"pair {raw!r}: source and target are the same digit; expected {DIGITS_FORM}"
        )
    return PairSpec(raw=raw, kind="digits", source=source, target=target)


PAIR_KINDS: list[PairKind] = [PairKind(re.compile(r"([0-9])-([0-9])"), _build_digits, DIGITS_FORM)]


def register_pair_kind(pattern: str, build: Builder, form: str) -> None:
    """Accept one more spec form; `pattern` must match the whole (stripped) text."""
    if any(k.pattern.pattern == pattern for k in PAIR_KINDS):
        raise ValueError(f"pair kind pattern {pattern!r} is already registered")
    PAIR_KINDS.append(PairKind(re.compile(pattern), build, form))


def parse_pair(text: str) -> PairSpec:
    """Parse a pair spec such as "3-5" (surrounding whitespace allowed)."""
    raw = text.strip() if isinstance(text, str) else ""
    for kind in PAIR_KINDS:
        m = kind.pattern.fullmatch(raw)
        if m is not None:
            return kind.build(m, raw)
    forms = " or ".join(k.form for k in PAIR_KINDS)
    raise DataError(f"invalid pair {text!r}: expected {forms}")
