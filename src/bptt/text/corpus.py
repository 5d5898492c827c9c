"""Reading training text: the built-in default corpus, or the user's files and folders.

The default corpus is the Python standard library's own source: the ``.py``
files at the top of the running interpreter's ``stdlib`` folder, read at run
time. Every machine with Python has it; nothing is downloaded or vendored.

User text must be UTF-8. A file that is not (or that looks binary) is refused
with its name and the byte offset of the first bad byte; folders are walked
recursively in sorted order, skipping hidden entries and files that are not text.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Corpus", "CorpusError", "default_corpus_files", "read_corpus"]


class CorpusError(ValueError):
    """The training text cannot be used (unreadable, not UTF-8, binary, empty, …)."""


@dataclass(frozen=True)
class Corpus:
    """Training text and where it came from.

    Attributes
    ----------
    text : str
        All files joined with a newline between them.
    files : tuple of str
        The files read, in order.
    """

    text: str
    files: tuple[str, ...]


def default_corpus_files() -> list[Path]:
    """The standard library's top-level ``.py`` files, sorted by name."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.is_file())
    if not files:
        raise CorpusError(f"no .py files found in the standard library folder {stdlib}")
    return files


def _decode(path: Path, data: bytes) -> str:
    nul = data.find(b"\x00")
    if nul != -1:
        raise CorpusError(f"{path}: looks binary (NUL byte at offset {nul}); bptt trains on UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _read(path: Path) -> str:
    """A regular file's UTF-8 text (never a FIFO or a device: they may block or never end)."""
    try:
        with path.open("rb") as f:
            head = f.read(8192)
            if b"\x00" in head:  # binary: refuse before reading the rest
                return _decode(path, head)
            data = head + f.read()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _decode(path, data)


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(p for f in sorted(files) if not f.startswith(".") and (p := Path(root) / f).is_file())
    return found


def read_corpus(paths: Sequence[str | os.PathLike] | None = None) -> Corpus:
    """Read the training text.

    Parameters
    ----------
    paths : sequence of file or folder paths, or None
        ``None`` (or empty) reads the default corpus. A file named directly must be
        UTF-8 text; inside a folder, files that are not UTF-8 text are skipped.

    Raises
    ------
    CorpusError
        For a missing path, an unreadable or non-UTF-8 file named directly, an
        empty file, a folder without text, or an empty corpus.
    """
    if not paths:
        files = default_corpus_files()
        return Corpus("\n".join(_read(f) for f in files), tuple(str(f) for f in files))
    texts, used = [], []
    for raw in paths:
        if str(raw) == "":
            raise CorpusError("an empty path was given (a file or folder name was expected)")
        path = Path(raw)
        if path.is_dir():
            found = 0
            for f in _walk(path):
                try:
                    text = _read(f)
                except CorpusError:
                    continue  # folders may hold images, archives, …: train on the text only
                if text:
                    texts.append(text)
                    used.append(str(f))
                    found += 1
            if not found:
                raise CorpusError(f"{path}: folder holds no non-empty UTF-8 text files")
        elif path.is_file():
            text = _read(path)
            if not text:
                raise CorpusError(f"{path}: file is empty")
            texts.append(text)
            used.append(str(path))
        elif path.exists():
            raise CorpusError(f"{path}: not a regular file (a FIFO, socket or device?)")
        elif path.is_symlink():
            raise CorpusError(f"{path}: broken or looping symbolic link")
        else:
            raise CorpusError(f"{path}: no such file or folder")
    return Corpus("\n".join(texts), tuple(used))
