"""`agent` mode: a small, deterministic tool-using model, so the seeded demo agent shows a real tool loop
with no API key.

When the last user text asks for something an offered tool does, the reply is one call to that tool
with arguments read from the text; once that call's result follows the user message, the reply says
the result in words; otherwise a short conversational answer. Everything here is a pure function of
the request (the engine turns the step into a reply and the renderer streams it like any other).

Picking the tool: the user's words against each tool's name words (2 points each) and description
words (1 point each), stop words left out, words compared by a light stem ("multiplied" is
"multiply"); a tool needs 2 points, ties go to the first offered. Arithmetic words and symbols
("times", "plus", "x", "/") count as the operation's name only when the text has two numbers, so
"what times are open?" is not a multiplication.

Filling the arguments from the tool's JSON schema, required parameters first, then the others in the
schema's order: numbers and integers take the text's numbers in order of appearance ("3 from 10" is
read as 10 then 3); an `enum` takes a value the text names; a boolean takes a yes or no word; a
string takes a quoted phrase, a URL, a path or file name, or a capitalised name ("Paris", "New York"),
else (when required) the words after the last preposition, else the text's remaining words. A
required parameter the text does not give takes the schema's `default`, or is left out (the tool's
own error then says so).
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any, Final

from api.simulator.config import SimulatorStep, SimulatorToolCall
from api.simulator.schemas import ChatCompletionMessage, ChatCompletionRequest, ChatCompletionTool


def _words_of(text: str) -> list[str]:
    return text.split()


def _set(words: str) -> frozenset[str]:
    return frozenset(_words_of(words))


MIN_SCORE: Final = 2
NAME_POINTS: Final = 2

STOP_WORDS: Final = _set(
    """a an the is are was were be been am what whats how much many me my mine i you your it its in on
    of for to from by and or with at please can could would will do does did tell give get set this that
    these those there here e g eg two number numbers as into than then use using tool tools some any
    let us we our should need want like know just also now today tomorrow yes no not ok okay so if
    about which who whom when where why hey hi hello thanks thank"""
)
# Words that end a string argument's phrase without being part of it ("weather in Paris today").
TRAILING_FILLERS: Final = _set("today tomorrow now please right currently then")
ARTICLES: Final = _set("a an the my your our this that some")
PREPOSITIONS: Final = _set("in for at about on of near called named titled with")
YES_WORDS: Final = _set("yes true on enable enabled with include including")
NO_WORDS: Final = _set("no false off disable disabled without exclude not never")
GREETINGS: Final = _set("hi hello hey morning afternoon evening greetings")
THANKS: Final = _set("thanks thank thx cheers")

# Always the same operation, numbers or not.
SYNONYMS: Final = {
    "addition": "add",
    "sum": "add",
    "total": "add",
    "subtraction": "subtract",
    "difference": "subtract",
    "multiplication": "multiply",
    "product": "multiply",
    "division": "divide",
    "quotient": "divide",
    "temperature": "weather",
}
# Only between numbers: "12 times 7" multiplies, "what times are open" does not.
ARITHMETIC_WORDS: Final = {
    "plus": "add",
    "times": "multiply",
    "x": "multiply",
    "minus": "subtract",
    "less": "subtract",
    "over": "divide",
}
# With the multiplication, minus and division signs (U+00D7, U+2212, U+00F7).
OPERATORS: Final = {
    "+": "add",
    "*": "multiply",
    "x": "multiply",
    "\u00d7": "multiply",
    "-": "subtract",
    "\u2212": "subtract",
    "/": "divide",
    "\u00f7": "divide",
}

NUMBER_WORDS: Final = {
    word: value
    for value, word in enumerate(
        _words_of(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen twenty"
        )
    )
}
_NUMBER = re.compile(
    r"(?<![\w.])(?P<digits>-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)(?![\w])"
    r"|\b(?P<word>" + "|".join(NUMBER_WORDS) + r")\b",
    re.IGNORECASE,
)
_OPERATOR = re.compile("\\d\\s*([+*x/\u00d7\u00f7\u2212-])\\s*-?\\d")
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|(?<!\w)'([^']+)'(?!\w)")
_URL = re.compile(r"https?://\S*[^\s.,!?;:)'\"]")
# A file name with an extension, or a path with a slash ("notes.txt", "docs/a.md", "Europe/Paris").
_PATH = re.compile(r"[\w-]{2,}\.[A-Za-z][A-Za-z0-9]{0,5}|[\w.-]*/[\w./-]+")
_PIECE = re.compile(_URL.pattern + r"|[\w/'.-]+|[?!;,:\n]")
_BOUNDARIES: Final = frozenset("?!;,:\n")
# Around a token, not part of a name.
_PUNCTUATION = ".'?!,"
_WORD = re.compile(r"[a-z]+")
_MISSING: Final = object()


def step(request: ChatCompletionRequest) -> SimulatorStep:
    """The next assistant message: a tool call, an answer from tool results, or a conversational
    reply."""
    messages = request.messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    # Curly apostrophes as straight ones: "what\u2019s" reads as "what's".
    user_text = messages[last_user].text().replace("\u2019", "'").strip() if last_user >= 0 else ""
    since_user = messages[last_user + 1 :]
    # Only the first reply to a user message calls a tool: after that the model answers, so a turn
    # always ends.
    if not any(m.role == "assistant" for m in since_user):
        call = _tool_call(request, user_text)
        if call is not None:
            return SimulatorStep(tool_calls=[call])
    results = [m for m in since_user if m.role == "tool"]
    text = _from_results(messages, results) if results else _conversational(user_text, request.tools)
    return SimulatorStep(text=text)


# --- which tool ----------------------------------------------------------------------------------


def stem(word: str) -> str:
    """A light stem, enough to match a tool's verb in its other forms."""
    for suffix, replacement in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + replacement
            break
    else:
        if word.endswith(("ses", "xes", "ches", "shes", "zes")) and len(word) > 5:
            word = word[:-2]
        elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
            word = word[:-1]
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 or w == "x"]


def _user_stems(text: str) -> set[str]:
    words = _words(text)
    arithmetic = len(_numbers(text)) >= 2
    stems: set[str] = set()
    for word in words:
        word = SYNONYMS.get(word, word)
        if arithmetic and word in ARITHMETIC_WORDS:
            word = ARITHMETIC_WORDS[word]
        if word in STOP_WORDS or word == "x":
            continue
        stems.add(stem(word))
    if arithmetic:
        stems |= {stem(OPERATORS[symbol]) for symbol in _OPERATOR.findall(text)}
    return stems


def _tool_stems(text: str) -> set[str]:
    # Split snake_case, kebab-case and camelCase names into words.
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").replace("-", " ")
    return {stem(w) for w in _words(spaced) if w not in STOP_WORDS and len(w) > 1}


def _score(tool: ChatCompletionTool, user: set[str]) -> int:
    name = _tool_stems(tool.function.name)
    description = _tool_stems(tool.function.description or "") - name
    return NAME_POINTS * len(user & name) + len(user & description)


def _choose(request: ChatCompletionRequest, text: str) -> ChatCompletionTool | None:
    tools = request.tools or []
    choice = request.tool_choice
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):  # {"type": "function", "function": {"name": ...}}: that tool
        forced = (choice.get("function") or {}).get("name")
        return next((t for t in tools if t.function.name == forced), None)
    user = _user_stems(text)
    scores = [_score(tool, user) for tool in tools]
    best = max(range(len(tools)), key=lambda i: (scores[i], -i))
    if scores[best] >= MIN_SCORE:
        return tools[best]
    return tools[0] if choice == "required" else None


def _tool_call(request: ChatCompletionRequest, text: str) -> SimulatorToolCall | None:
    tool = _choose(request, text)
    if tool is None:
        return None
    return SimulatorToolCall(name=tool.function.name, arguments=arguments(tool, text))


# --- its arguments -------------------------------------------------------------------------------


def arguments(tool: ChatCompletionTool, text: str) -> dict[str, Any]:
    """The call's arguments: the schema's parameters filled from the text."""
    schema = tool.function.parameters or {}
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    required = [name for name in schema.get("required") or () if name in properties]
    order = required + [name for name in properties if name not in required]
    tool_words = _tool_stems(f"{tool.function.name} {tool.function.description or ''}")
    numbers = deque(_numbers(text))
    strong = deque(_strong_phrases(text, tool_words))
    weak = deque(_weak_phrases(text, tool_words))
    lowered = text.lower()
    words = set(_words(text))
    filled: dict[str, Any] = {}
    for name in order:
        prop = _branch(properties[name])
        is_required = name in required
        value = _value(prop, numbers, strong, weak if is_required else None, lowered, words)
        if value is _MISSING and is_required and "default" in prop:
            value = prop["default"]
        if value is not _MISSING:
            filled[name] = value
    return filled


def _branch(prop: Any) -> dict[str, Any]:
    """A parameter's schema; of an `anyOf`/`oneOf` (an optional value), the first non-null branch."""
    if not isinstance(prop, dict):
        return {}
    for key in ("anyOf", "oneOf"):
        branches = [b for b in prop.get(key) or () if isinstance(b, dict) and b.get("type") != "null"]
        if branches:
            return {**branches[0], **{k: v for k, v in prop.items() if k != key}}
    return prop


def _type(prop: dict[str, Any]) -> str | None:
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def _value(
    prop: dict[str, Any],
    numbers: deque[float],
    strong: deque[str],
    weak: deque[str] | None,
    lowered: str,
    words: set[str],
) -> Any:
    if "const" in prop:
        return prop["const"]
    if isinstance(prop.get("enum"), list):
        for option in prop["enum"]:
            if isinstance(option, str) and re.search(rf"(?<!\w){re.escape(option.lower())}(?!\w)", lowered):
                return option
        return _MISSING
    kind = _type(prop)
    if kind in ("number", "integer"):
        if not numbers:
            return _MISSING
        number = numbers.popleft()
        return round(number) if kind == "integer" or number.is_integer() else number
    if kind == "boolean":
        if words & NO_WORDS:
            return False
        return True if words & YES_WORDS else _MISSING
    if kind == "string" or kind is None:
        for phrases in (strong, weak):
            if phrases:
                return phrases.popleft()
    return _MISSING


def _numbers(text: str) -> list[float]:
    """The text's numbers in order; "N from M" (subtract 3 from 10) is read as M then N."""
    found: list[tuple[int, int, float]] = []
    for match in _NUMBER.finditer(text):
        if match.group("digits") is not None:
            value = float(match.group("digits").replace(",", ""))
        else:
            value = float(NUMBER_WORDS[match.group("word").lower()])
        found.append((match.start(), match.end(), value))
    values = [value for _, _, value in found]
    for i in range(len(found) - 1):
        between = text[found[i][1] : found[i + 1][0]]
        if re.fullmatch(r"\s+(?:away\s+)?from\s+", between, flags=re.IGNORECASE):
            values[i], values[i + 1] = values[i + 1], values[i]
    return values


def _is_plain(token: str, tool_words: set[str]) -> bool:
    """A token that is not a name: a stop word, a word of the tool's, or a number."""
    # A contraction is its first word: "What's" is "what".
    lowered = re.sub(r"'(?:s|re|ll|ve|d|m|t)$", "", token.lower().strip("'"))
    return lowered in STOP_WORDS or stem(lowered) in tool_words or _NUMBER.fullmatch(token) is not None


def _tokens(text: str) -> list[str | None]:
    """The text's words, names, URLs and paths, `None` where a sentence or clause ends."""
    out: list[str | None] = []
    for match in _PIECE.finditer(text):
        piece = match.group()
        if piece in _BOUNDARIES:
            out.append(None)
            continue
        if _URL.fullmatch(piece):
            out.append(piece)
            continue
        stripped = piece.strip(_PUNCTUATION)
        if stripped:
            out.append(stripped)
        if piece.endswith("."):  # "in Paris. Then": the sentence ends with the name
            out.append(None)
    return out


def _is_path(token: str) -> bool:
    return bool(_URL.fullmatch(token) or _PATH.fullmatch(token))


def _strong_phrases(text: str, tool_words: set[str]) -> list[str]:
    """Quoted phrases, then URLs, paths and file names, and runs of capitalised words that are not
    the tool's or stop words, in order of appearance."""
    phrases = [next(g for g in match.groups() if g) for match in _QUOTED.finditer(text)]
    run: list[str] = []
    for token in [*_tokens(_QUOTED.sub("\n", text)), None]:
        if token is not None and _is_path(token):
            phrases += [" ".join(run), token] if run else [token]
            run = []
        elif token is not None and token[:1].isupper() and not _is_plain(token, tool_words):
            run.append(token)
        elif run:
            phrases.append(" ".join(run))
            run = []
    return _unique(phrases)


def _weak_phrases(text: str, tool_words: set[str]) -> list[str]:
    """For a required string: the words after the last preposition (to the clause's end), then the
    text's remaining words, then the whole text."""
    phrases: list[str] = []
    tokens = _tokens(text)
    last = max((i for i, t in enumerate(tokens) if t is not None and t.lower() in PREPOSITIONS), default=None)
    if last is not None:
        after: list[str] = []
        for token in tokens[last + 1 :]:
            if token is None:
                break
            after.append(token)
        while after and after[-1].lower() in TRAILING_FILLERS:
            after.pop()
        while after and after[0].lower() in ARTICLES:
            after.pop(0)
        if after:
            phrases.append(" ".join(after))
    remaining = [
        t for t in tokens if t is not None and t.lower() not in PREPOSITIONS and not _is_plain(t, tool_words)
    ]
    if remaining:
        phrases.append(" ".join(remaining))
    if text:
        phrases.append(text)
    return _unique(phrases)


def _unique(phrases: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for phrase in phrases:
        if phrase and phrase.lower() not in seen:
            seen.add(phrase.lower())
            out.append(phrase)
    return out


# --- answers -------------------------------------------------------------------------------------


def _from_results(messages: list[ChatCompletionMessage], results: list[ChatCompletionMessage]) -> str:
    names = {call.id: call.function.name for m in messages for call in m.tool_calls or ()}
    sentences = [_sentence(names.get(m.tool_call_id or "", "the tool"), m.text()) for m in results]
    return " ".join(sentences)


def _sentence(tool: str, content: str) -> str:
    try:
        value = json.loads(content)
    except ValueError:
        return f"{tool} returned: {_clip(content.strip())}."
    if isinstance(value, dict) and set(value) == {"error"}:
        return f"The {tool} tool failed: {_show(value['error'])}."
    main = _main(value)
    if isinstance(main, dict) and len(main) > 1:
        fields = [f"{key} {_show(v)}" for key, v in main.items() if not isinstance(v, dict | list)]
        return f"{tool} returned {', '.join(fields[:4]) or _show(main)}."
    return f"The result of {tool} is {_show(main)}."


def _main(value: Any) -> Any:
    """The value a reply should name: a `result`-like field, or the only one, else the whole."""
    while isinstance(value, dict):
        key = next(
            (k for k in ("result", "value", "answer", "output", "text", "content") if k in value), None
        )
        if key is None and len(value) == 1:
            key = next(iter(value))
        if key is None:
            return value
        value = value[key]
    return value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "nothing"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        if not value:
            return "an empty list"
        shown = ", ".join(_show(item) for item in value[:5])
        return shown + (f" and {len(value) - 5} more" if len(value) > 5 else "")
    if isinstance(value, dict):
        return _clip(json.dumps(value, separators=(",", ":")))
    return _clip(str(value))


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _conversational(text: str, tools: list[ChatCompletionTool] | None) -> str:
    words = set(_words(text))
    names = ", ".join(t.function.name for t in tools or ())
    offer = (
        f"I can use these tools: {names}. Ask me something one of them does."
        if names
        else "I have no tools in this conversation, so I can only chat."
    )
    if not text:
        return f"Hello! I'm the Everloop simulator, a small deterministic model. {offer}"
    if words & THANKS:
        return "You're welcome! Anything else?"
    if words & GREETINGS:
        return f"Hello! I'm the Everloop simulator, a small deterministic model. {offer}"
    return f"You said: \"{_clip(text, 200)}\". I'm a simulated model, so I can't answer that myself. {offer}"
