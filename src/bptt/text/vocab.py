"""Vocabularies: text ↔ token ids, at the character or the word level.

Character level (the default) keeps every distinct character of the training
text. Word level splits text into words, runs of whitespace and single
punctuation marks, so that joining the tokens gives the text back exactly; it
keeps the ``max_size`` most frequent tokens and maps the rest to ``<unk>``.

A vocabulary is a plain list of strings, saved as JSON inside checkpoints.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["UNK", "Vocabulary", "tokenize_words"]

UNK = "<unk>"
LEVELS = ("char", "word")
_WORD = re.compile(r"\w+|\s+|[^\w\s]")


def tokenize_words(text: str) -> list[str]:
    """Words, whitespace runs and single punctuation marks; ``"".join`` gives ``text`` back."""
    return _WORD.findall(text)


@dataclass(frozen=True)
class Vocabulary:
    """Token strings in id order, and the level they were cut at.

    Attributes
    ----------
    tokens : tuple of str
        ``tokens[i]`` is the text of id ``i``.
    level : str
        ``"char"`` or ``"word"``.
    """

    tokens: tuple[str, ...]
    level: str = "char"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"Vocabulary: level must be one of {list(LEVELS)}, got {self.level!r}")
        if not self.tokens:
            raise ValueError("Vocabulary: tokens must not be empty")
        index = {t: i for i, t in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("Vocabulary: tokens must be distinct")
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, texts: Iterable[str], level: str = "char", max_size: int | None = None) -> Vocabulary:
        """Vocabulary of ``texts``: every character, or ``<unk>`` plus the ``max_size − 1`` most frequent words."""
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2):
            raise ValueError(
                f"Vocabulary.build: max_size must be an integer ≥ 2 (<unk> and one word), got {max_size!r}"
            )
        if level == "char":
            chars: set[str] = set()
            for text in texts:
                chars.update(text)
            return cls(tuple(sorted(chars)), "char")
        if level != "word":
            raise ValueError(f"Vocabulary.build: level must be one of {list(LEVELS)}, got {level!r}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize_words(text))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # frequent first, ties by text
        keep = [t for t, _ in (ranked if max_size is None else ranked[: max_size - 1])]
        return cls((UNK, *sorted(t for t in keep if t != UNK)), "word")

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """``text`` cut into this vocabulary's units (characters or word tokens)."""
        return list(text) if self.level == "char" else tokenize_words(text)

    def unknown(self, text: str) -> list[str]:
        """Units of ``text`` that are not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(u for u in self.split(text) if u not in self._index))

    def encode(self, text: str, *, strict: bool = True) -> np.ndarray:
        """Token ids of ``text`` (int32).

        With ``strict`` (the default for characters) an unknown unit is a
        ``ValueError`` naming all of them; word vocabularies map unknown words
        to ``<unk>`` when ``strict=False``.
        """
        units = self.split(text)
        index = self._index
        if strict or UNK not in index:
            self._refuse(self.unknown(text), "text", "the vocabulary")
            return np.fromiter((index[u] for u in units), np.int32, len(units))
        unk = index[UNK]
        return np.fromiter((index.get(u, unk) for u in units), np.int32, len(units))

    def encode_input(self, text: str, name: str) -> tuple[np.ndarray, list[str]]:
        """Token ids of ``text`` given to a model, and the words read as ``<unk>``.

        Characters outside the vocabulary (or words, in a vocabulary without ``<unk>``)
        are a ``ValueError`` that names them and calls the text ``name``; unknown words
        become ``<unk>`` and are returned so the caller can warn.
        """
        missing = self.unknown(text)
        if self.level == "char" or UNK not in self._index:
            self._refuse(missing, name, "the model's vocabulary")
        return self.encode(text, strict=False), missing

    def _refuse(self, missing: list[str], name: str, whose: str) -> None:
        if missing:
            shown = ", ".join(repr(u) for u in missing[:10]) + (" …" if len(missing) > 10 else "")
            raise ValueError(f"{name} has {len(missing)} {self.level}s outside {whose}: {shown}")

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids."""
        return "".join(self.tokens[int(i)] for i in ids)

    def to_json(self) -> dict:
        return {"level": self.level, "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, data: dict) -> Vocabulary:
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise ValueError("vocabulary must be an object with a 'tokens' list")
        if not all(isinstance(t, str) for t in data["tokens"]):
            raise ValueError("vocabulary tokens must be strings")
        return cls(tuple(data["tokens"]), data.get("level", "char"))
