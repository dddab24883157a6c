"""How deeply a JSON or YAML document may nest and how many values it may hold, checked before it
is decoded.

The decoders recurse once per level (msgspec in C, PyYAML's composer in Python): 1,000 `[` in a
2 KB body exhaust Python's recursion limit inside them, which no handler can turn into a 400. And
YAML aliases let a few lines stand for billions of values ("billion laughs"), which only grow once
something walks or stores them. So the limits are checked on the text itself:

- JSON: with byte operations that run in C over the whole body (`bytes.count`, `replace`, `split`,
  `translate`), never a Python loop over its bytes. Strings are cut out first (escapes are undone
  before quotes are matched), so brackets and commas inside them do not count.
- YAML: on the parser's events (libyaml when present), counting an alias as everything its anchor
  holds; it stops at the first event over a limit, so a bomb costs no more than the limit.

"Values" are the members of arrays and the values of objects (keys aside), nested ones included: a
bound on the work and memory that decoding, validating and storing a document takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate

import yaml

from core.errors import InvalidInput
from core.settings import Settings


@dataclass(frozen=True)
class JsonLimits:
    max_depth: int  # nested arrays and objects: `[[1]]` is 2 levels
    max_items: int  # values in arrays and objects, in all

    @classmethod
    def of(cls, settings: Settings) -> JsonLimits:
        return cls(max_depth=settings.json_max_depth, max_items=settings.json_max_items)


def _too_deep(what: str, limits: JsonLimits) -> InvalidInput:
    return InvalidInput(f"{what} is nested deeper than {limits.max_depth} levels (JSON_MAX_DEPTH)")


def _too_many(what: str, limits: JsonLimits) -> InvalidInput:
    return InvalidInput(
        f"{what} holds more than {limits.max_items} values in its arrays and objects (JSON_MAX_ITEMS)"
    )


_WHITESPACE = b" \t\r\n"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# +1 for an opening bracket, -1 for a closing one: the running sum is the nesting depth.
_STEP = [0] * 256
for _opening in b"[{":
    _STEP[_opening] = 1
for _closing in b"]}":
    _STEP[_closing] = -1


def check_json(body: bytes, limits: JsonLimits, what: str = "the JSON body") -> None:
    """Raises InvalidInput (naming the limit) when `body` nests deeper than `limits.max_depth` or
    holds more than `limits.max_items` values. Malformed JSON within the limits passes: the
    decoder then says what is wrong with it."""
    # Counted with the strings, these are upper bounds: most bodies are done here.
    opens = body.count(b"[") + body.count(b"{")
    if opens <= limits.max_depth and opens + body.count(b",") <= limits.max_items:
        return
    # Escapes, left to right as a decoder reads them: `\\` is one backslash; every `\"` left is a
    # quote inside a string. Each remaining `"` then opens or closes a string.
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Every string is a value or the key of one: more than twice the limit means too many values
    # (checked before splitting, which makes an object per string).
    if text.count(b'"') // 2 > 2 * limits.max_items + 1:
        raise _too_many(what, limits)
    # The text outside strings, each string left as a `0` (a value, so `["a"]` is not empty).
    skeleton = b"0".join(text.split(b'"')[::2]).translate(None, _WHITESPACE)
    opens = skeleton.count(b"[") + skeleton.count(b"{")
    if opens > limits.max_depth:
        brackets = skeleton.translate(None, _NOT_BRACKETS)
        # Valid JSON within the value limit has at most 2 * max_items + 1 arrays and objects (each
        # is a value of its parent, but the outermost), so this prefix shows any excess depth; a
        # longer run of brackets is over the value limit (or not JSON) either way.
        bound = 4 * limits.max_items + 2
        if max(accumulate(map(_STEP.__getitem__, brackets[:bound])), default=0) > limits.max_depth:
            raise _too_deep(what, limits)
        if len(brackets) > bound:
            raise _too_many(what, limits)
    empty = skeleton.count(b"[]") + skeleton.count(b"{}")
    # The values of a non-empty array or object are one more than its commas.
    if skeleton.count(b",") + opens - empty > limits.max_items:
        raise _too_many(what, limits)


@dataclass
class _Open:
    """An array (sequence) or object (mapping) whose end has not come yet."""

    mapping: bool
    anchor: str | None
    children: int = 0
    values: int = 0  # values inside it, at any depth, aliases expanded
    height: int = 0  # levels of arrays and objects inside it


@dataclass
class _YamlCount:
    limits: JsonLimits
    what: str
    open: list[_Open] = field(default_factory=list)
    # What each anchor stands for: (values inside it, its own levels). An alias repeats all of it.
    anchors: dict[str, tuple[int, int]] = field(default_factory=dict)
    values: int = 0

    def take(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            if len(self.open) + 1 > self.limits.max_depth:
                raise _too_deep(self.what, self.limits)
            self.open.append(_Open(isinstance(event, yaml.MappingStartEvent), event.anchor))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            ended = self.open.pop()
            self.node(ended.values, ended.height + 1, ended.anchor, new=True)
        elif isinstance(event, yaml.ScalarEvent):
            self.node(0, 0, event.anchor, new=True)
        elif isinstance(event, yaml.AliasEvent):
            name = event.anchor or ""
            if any(o.anchor == name for o in self.open):
                raise InvalidInput(f"{self.what} contains itself: alias *{name} is inside &{name}")
            values, height = self.anchors.get(name, (0, 0))  # an unknown one: the loader says so
            self.node(values, height, None, new=False)
        elif isinstance(event, yaml.DocumentStartEvent):  # anchors are per document
            self.anchors.clear()

    def node(self, values: int, height: int, anchor: str | None, *, new: bool) -> None:
        """A whole node (a scalar, an alias, or a collection that just ended) in its parent."""
        if anchor is not None and new:
            self.anchors[anchor] = (values, height)
        if not self.open:
            return
        if len(self.open) + height > self.limits.max_depth:
            raise _too_deep(self.what, self.limits)
        parent = self.open[-1]
        # In a mapping, children alternate key and value; keys are not values.
        counted = 1 if not parent.mapping or parent.children % 2 == 1 else 0
        parent.children += 1
        parent.values += values + counted
        parent.height = max(parent.height, height)
        # A new node's own values were counted as they came; an alias's come again now.
        self.values += counted + (0 if new else values)
        if self.values > self.limits.max_items:
            raise _too_many(self.what, self.limits)


def check_yaml(text: str, limits: JsonLimits, what: str = "the YAML document") -> None:
    """As `check_json`, for YAML: nesting and values with every alias expanded, and an alias
    inside the node it names (a document that contains itself) refused. Raises InvalidInput;
    yaml.YAMLError for text that does not parse as far as it was read."""
    count = _YamlCount(limits, what)
    try:
        for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            count.take(event)
    except yaml.MarkedYAMLError as exc:
        # libyaml refuses more than 1,000 levels itself, and may find them while it looks ahead,
        # before it hands over the event of the first level over our limit: the same refusal.
        if exc.problem == "exceeded maximum nesting depth":
            raise _too_deep(what, limits) from None
        raise
