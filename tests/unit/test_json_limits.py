"""The nesting and size limits on JSON and YAML text (core/json_limits.py), without a server."""

from __future__ import annotations

import time

import msgspec
import pytest
import yaml

from core.errors import InvalidInput
from core.json_limits import JsonLimits, check_json, check_yaml

LIMITS = JsonLimits(max_depth=64, max_items=100_000)
DEEP = "is nested deeper than 64 levels"
MANY = "holds more than 100000 values"
TEN_MB = 10 * 1024 * 1024


def refusal(body: bytes) -> str | None:
    try:
        check_json(body, LIMITS)
    except InvalidInput as exc:
        return exc.message
    return None


def yaml_refusal(text: str) -> str | None:
    try:
        check_yaml(text, LIMITS)
    except InvalidInput as exc:
        return exc.message
    return None


def nested(levels: int, inner: bytes = b"0") -> bytes:
    return b"[" * levels + inner + b"]" * levels


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (nested(64), None),
        (nested(65), DEEP),
        (b"{" + b'"a":{' * 63 + b"}" * 64, None),
        (b"{" + b'"a":{' * 64 + b"}" * 65, DEEP),
        (b"[" * 65, DEEP),  # truncated: the decoder would still recurse before it noticed
        (nested(100_000), DEEP),
        (nested(1_000_000), DEEP),
        (b"[" + b",".join([b"0"] * 100_000) + b"]", None),
        (b"[" + b",".join([b"0"] * 100_001) + b"]", MANY),
        (b"[" + b",".join([b"[]"] * 100_000) + b"]", None),  # empty arrays are values, hold none
        (b'{"k":' + b"[" + b",".join([b"{}"] * 99_999) + b"]}", None),
        (b"[" + b",".join([b'{"k":1}'] * 50_000) + b"]", None),  # 50,000 objects, 1 value each
        (b"[" + b",".join([b'{"k":1}'] * 50_001) + b"]", MANY),
        (b"[" + b",".join([b'"s"'] * 300_000) + b"]", MANY),  # refused before splitting strings
        (b"[]" * 1_000_000, MANY),  # not JSON, and more arrays than any valid body within the limit
    ],
)
def test_depth_and_values_are_counted_outside_strings(body: bytes, expected: str | None) -> None:
    found = refusal(body)
    assert (found is None) if expected is None else (found is not None and expected in found), found


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "' + b"[" * 1_000 + b'"}',
        b'{"a": "' + b"{[," * 100_000 + b'"}',
        b'{"a": "\\"' + b"[" * 1_000 + b'"}',  # an escaped quote does not end the string
        b'{"a": "\\\\\\"' + b"[" * 1_000 + b'"}',  # nor after an escaped backslash
        b'["\\\\", "' + b"[" * 1_000 + b'"]',  # an escaped backslash ends, the next quote opens
        b'{"' + b"[" * 1_000 + b'": 1}',  # keys are strings too
    ],
)
def test_brackets_inside_strings_do_not_count(body: bytes) -> None:
    assert refusal(body) is None
    msgspec.json.decode(body)  # and they are JSON the decoder takes


def test_an_escaped_backslash_before_a_quote_ends_the_string() -> None:
    # "\\" is one backslash and the quote after it closes the string: the brackets are structure.
    assert DEEP in (refusal(b'["\\\\", ' + nested(100) + b"]") or "")


def test_the_message_names_what_and_the_limit() -> None:
    with pytest.raises(InvalidInput) as info:
        check_json(nested(100), JsonLimits(max_depth=20, max_items=1_000), "the agent file")
    assert info.value.message == "the agent file is nested deeper than 20 levels (JSON_MAX_DEPTH)"
    with pytest.raises(InvalidInput) as info:
        check_json(b"[" + b"1," * 2_000 + b"1]", JsonLimits(max_depth=20, max_items=1_000))
    assert info.value.message == (
        "the JSON body holds more than 1000 values in its arrays and objects (JSON_MAX_ITEMS)"
    )


@pytest.mark.parametrize(
    "body",
    [
        nested(TEN_MB // 2 - 1),
        b"[" + b"0," * (TEN_MB // 2 - 1) + b"0]",
        b'["' + b'",,"' * (TEN_MB // 4) + b'"]',
        b'{"text": "' + b'\\"[{,' * (TEN_MB // 6) + b'"}',
        b'{"image": "' + b"A" * TEN_MB + b'"}',
        b"[]" * (TEN_MB // 2),
    ],
    ids=["nested", "numbers", "strings", "escapes", "one-string", "empty-arrays"],
)
def test_ten_megabytes_take_well_under_a_second(body: bytes) -> None:
    """No Python loop over the bytes: a 10 MB body is a few passes in C (about 0.1-0.3 s for the
    worst of these on a busy 2-core machine; the bound leaves room for a slow CI runner)."""
    started = time.perf_counter()
    refusal(body)
    assert time.perf_counter() - started < 1.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: " + "[" * 63 + "]" * 63, None),
        ("a: " + "[" * 64 + "]" * 64, DEEP),
        ("a: " + "[" * 1_000 + "]" * 1_000, DEEP),  # libyaml's own limit, reported as ours
        ("a: " + "[" * 100_000, DEEP),
        ("".join(" " * i + "- \n" for i in range(0, 130, 2)), DEEP),  # block style: indentation
        ("".join(" " * i + "k:\n" for i in range(0, 128, 2)), None),
        ("".join(" " * i + "k:\n" for i in range(0, 130, 2)), DEEP),
        ("[" + ", ".join(["0"] * 100_000) + "]", None),
        ("[" + ", ".join(["0"] * 100_001) + "]", MANY),
        ("{" + ", ".join(f"k{i}: 0" for i in range(100_000)) + "}", None),  # keys are not values
        ("a: '" + "[" * 1_000 + "'\nb: \"" + "{," * 100_000 + '"\n', None),  # strings are text
        # The mapping, 23 arrays, then the alias's 40: 64 levels, and one more is too many.
        ("a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 23 + "*a" + "]" * 23, None),
        ("a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 24 + "*a" + "]" * 24, DEEP),
        ("a: &a [*a]\n", "contains itself: alias *a is inside &a"),
        ("a: &a {b: [{c: *a}]}\n", "contains itself"),
    ],
)
def test_yaml_nesting_and_values(text: str, expected: str | None) -> None:
    found = yaml_refusal(text)
    assert (found is None) if expected is None else (found is not None and expected in found), found


def billion_laughs(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_aliases_count_as_everything_they_stand_for() -> None:
    # a0 holds 10 values; each a_i holds ten a_(i-1) and what those hold: 11,110 values at a3.
    assert yaml_refusal(billion_laughs(3)) is None
    assert MANY in (yaml_refusal(billion_laughs(4)) or "")
    started = time.perf_counter()
    assert MANY in (yaml_refusal(billion_laughs(9)) or "")  # 10^10 values, refused at once
    assert time.perf_counter() - started < 1
    merged = "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  z: 3\n"
    assert yaml_refusal(merged) is None


def test_yaml_that_does_not_parse_is_left_to_the_loader() -> None:
    with pytest.raises(yaml.YAMLError):
        check_yaml("a: [1, 2\nb: }", LIMITS)
