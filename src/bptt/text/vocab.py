"""Vocabularies: text ↔ token ids, at the character or the word level.

Character level (the default) keeps every distinct character of the training
text. Word level splits text into words, runs of whitespace and single
punctuation marks, so that joining the tokens gives the text back exactly; it
keeps the ``max_size`` most frequent tokens and maps the rest to ``<unk>``.

A corpus too big to hold as one string is read in chunks: :meth:`Vocabulary.build_from_chunks`
and :meth:`Vocabulary.encode_chunks` take the pieces of one text (a word cut by a chunk
boundary is completed from the next chunk, see :func:`word_chunks`) and give the same
vocabulary and ids as the whole text would, the ids in the smallest unsigned dtype that
holds them (:attr:`Vocabulary.id_dtype`: one byte per token up to 256 tokens).

A vocabulary is a plain list of strings, saved as JSON inside checkpoints.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

__all__ = ["UNK", "Vocabulary", "tokenize_words", "word_chunks"]

UNK = "<unk>"
LEVELS = ("char", "word")
_WORD = re.compile(r"\w+|\s+|[^\w\s]")
_CODE_POINTS = 0x110000  # Unicode's code space: the size of a character → id table


def tokenize_words(text: str) -> list[str]:
    """Words, whitespace runs and single punctuation marks; ``"".join`` gives ``text`` back."""
    return _WORD.findall(text)


def word_chunks(chunks: Iterable[str]) -> Iterator[list[str]]:
    """The word tokens of the text that ``chunks`` join into, one list per chunk.

    Tokens are maximal runs of word characters, maximal runs of whitespace, or single
    punctuation marks, so each chunk is cut on its own and only its last token may go on
    into the next chunk: it does when the two characters either side of the boundary
    make one token. A run longer than a chunk is kept in pieces and joined once it ends
    (linear in its length). The tokens are exactly ``tokenize_words("".join(chunks))``.
    """
    pending: list[str] = []  # the last token so far, in pieces: it may go on into the next chunk
    for chunk in chunks:
        if not chunk:
            continue
        tokens = tokenize_words(chunk)
        if pending and len(tokenize_words(pending[-1][-1] + chunk[0])) == 1:  # the run crosses the boundary
            pending.append(tokens[0])
            if len(tokens) == 1:
                continue  # and may cross the next one too
            tokens[0] = "".join(pending)
        elif pending:
            tokens.insert(0, "".join(pending))
        pending = [tokens.pop()]
        if tokens:
            yield tokens
    if pending:
        yield ["".join(pending)]


def _code_points(text: str) -> np.ndarray:
    """``ord`` of every character of ``text``: uint8 for ASCII, uint32 otherwise."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _id_dtype(n: int) -> np.dtype:
    return np.dtype(np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.uint32)


def _char_table(tokens: tuple[str, ...]) -> np.ndarray:
    """``table[ord(c)]`` is the id of character ``c``, or −1 (int32, one entry per code point)."""
    table = np.full(_CODE_POINTS, -1, np.int32)
    for i, t in enumerate(tokens):
        if len(t) == 1:  # a longer token never matches one character
            table[ord(t)] = i
    return table


def _check_max_size(max_size) -> None:
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2):
        raise ValueError(f"Vocabulary.build: max_size must be an integer ≥ 2 (<unk> and one word), got {max_size!r}")


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
    _table: np.ndarray | None = field(init=False, repr=False, compare=False)  # char level: code point → id

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"Vocabulary: level must be one of {list(LEVELS)}, got {self.level!r}")
        if not self.tokens:
            raise ValueError("Vocabulary: tokens must not be empty")
        index = {t: i for i, t in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("Vocabulary: tokens must be distinct")
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_table", _char_table(self.tokens) if self.level == "char" else None)

    @classmethod
    def build(cls, texts: Iterable[str], level: str = "char", max_size: int | None = None) -> Vocabulary:
        """Vocabulary of ``texts``: every character, or ``<unk>`` plus the ``max_size − 1`` most frequent words.

        Each text is cut into words on its own; :meth:`build_from_chunks` takes pieces of one text.
        """
        _check_max_size(max_size)
        if level == "char":
            return cls._of_chars(texts)
        if level != "word":
            raise ValueError(f"Vocabulary.build: level must be one of {list(LEVELS)}, got {level!r}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize_words(text))
        return cls._of_words(counts, max_size)

    @classmethod
    def build_from_chunks(cls, chunks: Iterable[str], level: str = "char", max_size: int | None = None) -> Vocabulary:
        """:meth:`build` of the one text that ``chunks`` join into, read one chunk at a time."""
        _check_max_size(max_size)
        if level == "char":
            return cls._of_chars(chunks)
        if level != "word":
            raise ValueError(f"Vocabulary.build: level must be one of {list(LEVELS)}, got {level!r}")
        counts: Counter[str] = Counter()
        for tokens in word_chunks(chunks):
            counts.update(tokens)
        return cls._of_words(counts, max_size)

    @classmethod
    def _of_chars(cls, texts: Iterable[str]) -> Vocabulary:
        seen = np.zeros(_CODE_POINTS, bool)
        for text in texts:
            seen[_code_points(text)] = True
        return cls(tuple(chr(c) for c in np.flatnonzero(seen).tolist()), "char")  # sorted by code point

    @classmethod
    def _of_words(cls, counts: Counter[str], max_size: int | None) -> Vocabulary:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # frequent first, ties by text
        keep = [t for t, _ in (ranked if max_size is None else ranked[: max_size - 1])]
        return cls((UNK, *sorted(t for t in keep if t != UNK)), "word")

    @property
    def id_dtype(self) -> np.dtype:
        """The smallest unsigned integer dtype that holds every id (uint8, uint16 or uint32)."""
        return _id_dtype(len(self.tokens))

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
        pieces = list(self.encode_chunks([text], strict=strict))
        return np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)

    def encode_chunks(self, chunks: Iterable[str], *, strict: bool = True) -> Iterator[np.ndarray]:
        """Token ids of the text that ``chunks`` join into, one array per chunk, in :attr:`id_dtype`.

        Together they equal ``encode("".join(chunks), strict=strict)``. An unknown unit (with
        ``strict``, or always at character level) is the same ``ValueError`` as there, raised once
        the rest of the text has been read to name every unknown unit.
        """
        if self.level == "char":
            yield from self._encode_chars(iter(chunks))
            return
        index, dtype = self._index, self.id_dtype
        unk = None if strict else index.get(UNK)
        tokens_of = word_chunks(chunks)
        for tokens in tokens_of:
            if unk is not None:
                yield np.fromiter(map(index.get, tokens, repeat(unk)), dtype, len(tokens))
                continue
            try:
                yield np.fromiter(map(index.__getitem__, tokens), dtype, len(tokens))
            except KeyError:
                missing = dict.fromkeys(u for u in tokens if u not in index)
                for rest in tokens_of:
                    missing.update(dict.fromkeys(u for u in rest if u not in index))
                self._refuse(list(missing), "text", "the vocabulary")

    def _encode_chars(self, chunks: Iterator[str]) -> Iterator[np.ndarray]:
        table, dtype = self._table, self.id_dtype
        for text in chunks:
            points = _code_points(text)
            ids = (table[:256] if points.dtype == np.uint8 else table)[points]  # −1: not in the vocabulary
            if ids.size and ids.min() < 0:
                missing = dict.fromkeys(self._unknown_points(points, ids))
                for rest in chunks:
                    points = _code_points(rest)
                    missing.update(dict.fromkeys(self._unknown_points(points, table[points])))
                self._refuse([chr(c) for c in missing], "text", "the vocabulary")
            yield ids.astype(dtype)

    @staticmethod
    def _unknown_points(points: np.ndarray, ids: np.ndarray) -> list[int]:
        """Code points whose id is −1, in order of first appearance."""
        bad = points[ids < 0]
        values, first = np.unique(bad, return_index=True)
        return values[np.argsort(first)].tolist()

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
