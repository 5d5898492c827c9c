"""Text read from a file someone may have handed you: bounded JSON, and short messages about it.

A checkpoint's header and metadata are JSON. ``json.loads`` recurses once per
nesting level, so ``[[[[…`` 100,000 levels deep exhausts the interpreter's stack
(a ``RecursionError``, not a decode error). :func:`parse_json` measures the nesting
first, in time linear in the text, and refuses anything deeper than :data:`MAX_DEPTH`
levels; bptt's own JSON is at most 4 levels deep.

Any error message that quotes a file's content goes through :func:`elide`, so a
21-million-character value can never become a 21-million-character error line.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

__all__ = ["MAX_DEPTH", "MAX_MESSAGE", "elide", "json_depth", "parse_json"]

MAX_DEPTH = 64  # nesting levels of [ and { allowed in any JSON a file holds
MAX_MESSAGE = 300  # characters of file content any error message may quote

_ESCAPE = re.compile(r"\\.", re.S)  # \" \\ \n …: after these go, every " opens or closes a string
_STRING = re.compile(r'"[^"]*"')  # linear: no escapes are left to backtrack over
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_CHUNK = 1 << 20  # brackets counted per block: memory stays flat for any size of text


def elide(text: object, limit: int = MAX_MESSAGE) -> str:
    """``str(text)`` on one line, cut to at most ``limit`` characters with "…" where text was left out."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    if len(text) <= limit:
        return text
    tail = min(limit // 4, 40)
    return text[: limit - tail - 1] + "…" + text[len(text) - tail :]


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON ``text`` (0 for a scalar), brackets in strings not counted.

    Runs in time linear in ``len(text)`` whatever the text (regular expressions that
    cannot backtrack, then a running sum over blocks of brackets).
    """
    text = _ESCAPE.sub("", text)
    text = _STRING.sub("", text)
    brackets = np.frombuffer(text.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET), np.uint8)
    depth = peak = 0
    for a in range(0, len(brackets), _CHUNK):
        run = depth + np.cumsum(np.take(_STEP, brackets[a : a + _CHUNK]), dtype=np.int64)  # depth after each
        peak, depth = max(peak, int(run.max())), int(run[-1])
    return peak


def parse_json(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(text)`` for text from a file, refusing nesting deeper than ``max_depth`` before parsing.

    Raises
    ------
    ValueError
        When ``text`` is not JSON or is nested too deeply; the message is one short line
        (it never quotes more than a few dozen characters of ``text``).
    """
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} levels deep (at most {max_depth} allowed)")
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise ValueError(f"not valid JSON ({elide(exc, 120)})") from None
