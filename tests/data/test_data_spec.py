"""Pair spec parsing: good forms, every malformed form, and the extension table."""

from __future__ import annotations

import re

import pytest

from otzoo.data import PairSpec, parse_pair
from otzoo.data.spec import PAIR_KINDS, register_pair_kind
from otzoo.errors import DataError


@pytest.mark.parametrize(
    ("text", "source", "target"),
    [("3-5", 3, 5), ("0-9", 0, 9), ("  7-1 \n", 7, 1), ("9-0", 9, 0)],
)
def test_parse_digit_pairs(text: str, source: int, target: int) -> None:
    spec = parse_pair(text)
    assert spec == PairSpec(raw=text.strip(), kind="digits", source=source, target=target)


@pytest.mark.parametrize("text", ["3-3", "3-x", "12-5", "", "  ", "3", "3-5-7", "3 - 5", "٣-5"])
def test_bad_pairs_are_one_line_data_errors(text: str) -> None:
    with pytest.raises(DataError) as info:
        parse_pair(text)
    msg = str(info.value)
    assert "\n" not in msg
    assert "A-B with two different digits 0-9, e.g. 3-5" in msg


def test_same_digit_says_why() -> None:
    with pytest.raises(DataError, match="same digit"):
        parse_pair("4-4")


def test_registered_kind_is_parsed_and_listed_in_errors() -> None:
    def build(m: re.Match[str], raw: str) -> PairSpec:
        return PairSpec(raw=raw, kind="toy", source=-1, target=int(m.group(1)))

    register_pair_kind(r"toy-([0-9])", build, "toy-D, e.g. toy-5")
    try:
        assert parse_pair("toy-5") == PairSpec("toy-5", "toy", -1, 5)
        with pytest.raises(DataError, match="toy-D, e.g. toy-5"):
            parse_pair("toy-55")
        with pytest.raises(ValueError, match="already registered"):
            register_pair_kind(r"toy-([0-9])", build, "again")
    finally:
        PAIR_KINDS[:] = [k for k in PAIR_KINDS if k.pattern.pattern != r"toy-([0-9])"]
    assert parse_pair("3-5").kind == "digits"
