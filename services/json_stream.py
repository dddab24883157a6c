"""An incremental JSON tokenizer for `/v2/call/stream`: fed the model's text as it arrives, it says
which field each piece of a value belongs to (`person.name`, `items[0]`), so a client can fill a form
while the answer streams (Opper's `json_path`).

A string value comes out as decoded fragments (escapes resolved, a fragment per fed piece), to be
concatenated; an empty string as one `""`; a number, `true`, `false` or `null` as one whole value
once it is complete. Empty objects and arrays produce nothing. Paths join object keys with `.` and
array indexes as `[i]`; the root value's path is `""`. A key holding `.` or `[` is ambiguous in that
notation (as in Opper's), which is why `assemble` here only serves the tests and clients that know
their schema. The tokenizer is lenient: text outside a JSON value is skipped, since the whole answer
is parsed and validated anyway once it has arrived."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

Delta = tuple[str, str | int | float | bool | None]

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_SCALAR_CHARS = frozenset("+-.0123456789eEtrufalsn")


@dataclass
class _Frame:
    array: bool
    key: str | None = None  # an object's current key
    index: int = 0  # an array's current index
    has_value: bool = False  # an array: whether the current index holds a value yet
    expecting_key: bool = False  # an object: the next string is a key


@dataclass
class JsonStream:
    _stack: list[_Frame] = field(default_factory=list)
    _in_string: bool = False
    _string_is_key: bool = False
    _text: list[str] = field(default_factory=list)  # the current string's not yet emitted part
    _emitted: bool = False  # whether the current string value produced a delta
    _escape: str | None = None  # a pending escape: "\\" or "\\uXXX..."
    _high: str | None = None  # a UTF-16 high surrogate waiting for its low half
    _scalar: list[str] = field(default_factory=list)
    _done: bool = False  # the root value ended
    _prose: bool = False  # text that is not JSON came before the root value

    def feed(self, piece: str) -> list[Delta]:
        """The deltas that `piece` completes, in order."""
        out: list[Delta] = []
        for char in piece:
            self._char(char, out)
        if self._in_string and not self._string_is_key and self._text:
            out.append((self._path(), "".join(self._text)))
            self._text.clear()
            self._emitted = True
        return out

    def finish(self) -> list[Delta]:
        """The end of the text: a root scalar (a bare number) is complete only now."""
        out: list[Delta] = []
        if self._scalar:
            self._end_scalar(out)
        return out

    # ------------------------------------------------------------------------------------ parsing

    def _path(self) -> str:
        path = ""
        for frame in self._stack:
            if frame.array:
                path += f"[{frame.index}]"
            else:
                path += f".{frame.key}" if path else str(frame.key)
        return path

    def _char(self, char: str, out: list[Delta]) -> None:
        if self._in_string:
            self._string_char(char, out)
            return
        if self._scalar:
            if char in _SCALAR_CHARS:
                self._scalar.append(char)
                return
            self._end_scalar(out)
        if char in " \t\r\n" or self._done:
            return
        top = self._stack[-1] if self._stack else None
        if top is None and self._prose and char not in "{[":
            return  # after text that is not JSON, only an object or array starts the value
        if char == '"':
            self._in_string, self._emitted = True, False
            self._string_is_key = top is not None and not top.array and top.expecting_key
            if not self._string_is_key:
                self._start_value()
        elif char in "{[":
            self._start_value()
            self._stack.append(_Frame(array=char == "[", expecting_key=char == "{"))
        elif char in "}]":
            if self._stack:
                self._stack.pop()
                self._end_value()
        elif char == ",":
            if top is not None:
                if top.array:
                    top.index += 1
                    top.has_value = False
                else:
                    top.expecting_key = True
        elif char == ":":
            pass
        elif char in _SCALAR_CHARS:
            self._start_value()
            self._scalar.append(char)
        elif top is None:
            self._prose = True  # a Markdown fence or prose before the JSON: not part of a value

    def _start_value(self) -> None:
        if self._stack and self._stack[-1].array:
            self._stack[-1].has_value = True

    def _end_value(self) -> None:
        if not self._stack:
            self._done = True

    def _end_scalar(self, out: list[Delta]) -> None:
        raw = "".join(self._scalar)
        self._scalar.clear()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # not JSON: passed on as text; validation of the whole answer says why
        out.append((self._path(), value))
        self._end_value()

    def _string_char(self, char: str, out: list[Delta]) -> None:
        if self._escape is not None:
            self._escape += char
            if self._escape.startswith("\\u"):
                if len(self._escape) == 6:
                    self._code_unit(int(self._escape[2:], 16) if _is_hex(self._escape[2:]) else 0xFFFD)
                    self._escape = None
                return
            if char != "u":
                self._append(_ESCAPES.get(char, char))
                self._escape = None
            return
        if char == "\\":
            self._escape = "\\"
        elif char == '"':
            self._end_string(out)
        else:
            self._append(char)

    def _code_unit(self, unit: int) -> None:
        if 0xD800 <= unit < 0xDC00:
            self._high = chr(unit)
            return
        if 0xDC00 <= unit < 0xE000 and self._high is not None:
            pair = (self._high + chr(unit)).encode("utf-16", "surrogatepass").decode("utf-16")
            self._high = None
            self._text.append(pair)
            return
        self._append(chr(unit))

    def _append(self, text: str) -> None:
        if self._high is not None:  # a lone high surrogate: as json.loads would keep it
            self._text.append(self._high)
            self._high = None
        self._text.append(text)

    def _end_string(self, out: list[Delta]) -> None:
        text = "".join(self._text)
        self._text.clear()
        self._in_string = False
        if self._string_is_key:
            top = self._stack[-1]
            top.key, top.expecting_key = text, False
            return
        if text or not self._emitted:
            out.append((self._path(), text))
        self._end_value()


def _is_hex(text: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]{4}", text) is not None


# ------------------------------------------------------------------------------------- assembling

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def assemble(deltas: list[Delta]) -> Any:
    """What a client rebuilds from the deltas: strings concatenated at their path, other values set.
    Objects and arrays are made as their paths need them (so empty ones are missing)."""
    root: dict[str, Any] = {}
    for path, delta in deltas:
        parts: list[str | int] = [key if key else int(index) for key, index in _PART.findall(path)]
        container: Any = root
        step: str | int = "value"
        for part in parts:
            container = _child(container, step, [] if isinstance(part, int) else {})
            step = part
        if isinstance(delta, str):
            current = _get(container, step)
            _set(container, step, (current if isinstance(current, str) else "") + delta)
        else:
            _set(container, step, delta)
    return root.get("value")


def _get(container: Any, step: str | int) -> Any:
    if isinstance(container, list):
        assert isinstance(step, int)
        return container[step] if step < len(container) else None
    return container.get(step)


def _set(container: Any, step: str | int, value: Any) -> None:
    if isinstance(container, list):
        assert isinstance(step, int)
        while len(container) <= step:
            container.append(None)
        container[step] = value
    else:
        container[step] = value


def _child(container: Any, step: str | int, empty: Any) -> Any:
    current = _get(container, step)
    if current is None:
        _set(container, step, empty)
        return empty
    return current
