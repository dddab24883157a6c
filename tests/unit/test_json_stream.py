"""The incremental JSON tokenizer behind `/v2/call/stream`'s `json_path`: every split of a text gives
deltas that reassemble into the parsed JSON, each attributed to its field."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from services.json_stream import Delta, JsonStream, assemble

DOCUMENT = {
    "person": {"name": 'Ada "the first" Lovelace\n', "age": 36, "alive": False, "spouse": None},
    "items": ["x", {"k": -1.5e3}, [True, "é😀"]],
    "empty": "",
    "unicode": "snow \u2603 \U0001f600 tab\t/",
}


def streamed(text: str, pieces: list[str]) -> list[Delta]:
    stream = JsonStream()
    out = [delta for piece in pieces for delta in stream.feed(piece)]
    assert "".join(pieces) == text
    return out + stream.finish()


def splits(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces, start = [], 0
    while start < len(text):
        size = rng.randint(1, 7)
        pieces.append(text[start : start + size])
        start += size
    return pieces


@pytest.mark.parametrize("ascii_only", [True, False])
@pytest.mark.parametrize("seed", range(20))
def test_any_split_reassembles(seed: int, ascii_only: bool) -> None:
    text = json.dumps(DOCUMENT, ensure_ascii=ascii_only, indent=None if seed % 2 else 2)
    assert assemble(streamed(text, splits(text, seed))) == DOCUMENT


def test_paths_name_the_fields() -> None:
    text = '{"person": {"name": "Ada", "age": 36}, "items": ["a", {"k": true}], "n": null}'
    deltas = streamed(text, [text[:22], text[22:]])
    assert deltas == [
        ("person.name", "A"),
        ("person.name", "da"),
        ("person.age", 36),
        ("items[0]", "a"),
        ("items[1].k", True),
        ("n", None),
    ]


def test_a_string_is_streamed_as_it_arrives() -> None:
    stream = JsonStream()
    assert stream.feed('{"summary": "The qu') == [("summary", "The qu")]
    assert stream.feed("ick \\") == [("summary", "ick ")]  # the escape is not complete yet
    assert stream.feed('n fox"') == [("summary", "\n fox")]
    assert stream.feed("}") == []


def test_numbers_wait_for_their_end() -> None:
    stream = JsonStream()
    assert stream.feed('{"n": 12') == []
    assert stream.feed("34, ") == [("n", 1234)]


def test_empty_strings_arrive_once() -> None:
    assert streamed('{"a": "", "b": [""]}', ['{"a": "', '", "b": [""]}']) == [("a", ""), ("b[0]", "")]


def test_root_values_and_prose_around_them() -> None:
    assert streamed("42", ["4", "2"]) == [("", 42)]
    assert streamed('"hi"', ['"h', 'i"']) == [("", "h"), ("", "i")]
    fenced = 'Sure:\n```json\n{"a": 1}\n```'
    assert assemble(streamed(fenced, [fenced])) == {"a": 1}


def test_assemble_builds_nested_arrays() -> None:
    deltas: list[Delta] = [("m[0][1]", 2), ("m[0][0]", 1), ("m[1][0].x", "y")]
    expected: Any = {"m": [[1, 2], [{"x": "y"}]]}
    assert assemble(deltas) == expected
