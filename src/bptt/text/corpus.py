"""Reading training text: the built-in default corpus, or the user's files and folders.

The default corpus is the Python standard library's own source: the ``.py``
files at the top of the running interpreter's ``stdlib`` folder, read at run
time. Every machine with Python has it; nothing is downloaded or vendored.

User text must be UTF-8. A file that is not (or that looks binary) is refused
with its name and the byte offset of the first bad byte; folders are walked
recursively in sorted order, skipping hidden entries and files that are not text.
A file or folder that cannot be read (no permission) is refused with its name,
even inside a folder: a corpus never silently loses part of its text.

Text is never held whole. :func:`read_corpus` checks every file in chunks of
:data:`CHUNK_BYTES` and returns the list of files; :meth:`Corpus.chunks` then reads
the text again, one chunk at a time, for each pass (vocabulary, encoding).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vocab import Vocabulary

__all__ = ["CHUNK_BYTES", "Corpus", "CorpusError", "default_corpus_files", "encode_corpus", "read_corpus"]

CHUNK_BYTES = 1 << 20  # 1 MiB of a file read, checked and decoded at a time (word level: ~0.5M tokens)


class CorpusError(ValueError):
    """The training text cannot be used (unreadable, not UTF-8, binary, empty, …)."""


class _NotTextError(CorpusError):
    """A file that is not UTF-8 text: refused when named, skipped inside a folder."""


@dataclass(frozen=True)
class Corpus:
    """Where the training text is: files read in order, joined with a newline between them.

    Attributes
    ----------
    files : tuple of str
        The files, in order.
    nbytes : int
        Bytes of the joined text (file sizes plus the newlines between them) when the
        files were checked: no text has more characters or word tokens than this.
    """

    files: tuple[str, ...]
    nbytes: int

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
        """The joined text, in pieces of about ``chunk_bytes`` bytes (never a character cut in two).

        Raises
        ------
        CorpusError
            If a file can no longer be read or is no longer UTF-8 text (it changed since
            :func:`read_corpus` checked it).
        """
        for i, f in enumerate(self.files):
            if i:
                yield "\n"
            for text, _ in _pieces(Path(f), chunk_bytes):
                yield text

    @property
    def text(self) -> str:
        """The whole text as one string (for small corpora: training reads :meth:`chunks`)."""
        return "".join(self.chunks())


def default_corpus_files() -> list[Path]:
    """The standard library's top-level ``.py`` files, sorted by name."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.is_file())
    if not files:
        raise CorpusError(f"no .py files found in the standard library folder {stdlib}")
    return files


def _unreadable(path: Path | str, exc: OSError) -> CorpusError:
    return CorpusError(f"{path}: cannot read ({exc.strerror or exc}); make it readable or leave it out of the corpus")


def _complete(data: bytes) -> int:
    """Length of the longest prefix of ``data`` that does not end inside a multi-byte UTF-8 character."""
    for k in range(1, min(4, len(data)) + 1):
        b = data[-k]
        if b < 0x80:  # ASCII: nothing pending
            return len(data)
        if b >= 0xC0:  # a lead byte: does its character fit in the k bytes left?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return len(data) if need <= k else len(data) - k
    return len(data)  # only continuation bytes: invalid wherever they end, let the decoder say where


def _pieces(path: Path, chunk_bytes: int) -> Iterator[tuple[str, int]]:
    """A regular file's UTF-8 text in pieces, checked as it is read (NUL bytes and invalid UTF-8 refused).

    Yields each piece's text and its length in bytes.

    Offsets in errors count bytes from the start of the file, as one whole decode would report.
    """
    try:
        f = path.open("rb")
    except OSError as exc:
        raise _unreadable(path, exc) from None
    with f:
        pending, offset = b"", 0  # bytes of a character cut by the last read; where they start in the file
        while True:
            try:
                block = f.read(chunk_bytes)
            except OSError as exc:
                raise _unreadable(path, exc) from None
            data = pending + block
            nul = data.find(b"\x00")
            if nul != -1:
                at = offset + nul
                raise _NotTextError(f"{path}: looks binary (NUL byte at offset {at}); bptt trains on UTF-8 text")
            cut = _complete(data) if block else len(data)  # at the end, decode what is left and fail if cut
            try:
                text = data[:cut].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _NotTextError(
                    f"{path}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {offset + exc.start})"
                ) from None
            if text:
                yield text, cut
            if not block:
                return
            pending, offset = data[cut:], offset + cut


def _check(path: Path) -> int:
    """Bytes of the UTF-8 text file ``path``, read through once in chunks to check it (0: empty)."""
    return sum(n for _, n in _pieces(path, CHUNK_BYTES))


def _walk(folder: Path) -> list[Path]:
    """Regular, non-hidden files under ``folder``, sorted; an unreadable folder or file is an error."""

    def refuse(exc: OSError) -> None:
        raise _unreadable(exc.filename or folder, exc)

    found = []
    for root, dirs, files in os.walk(folder, onerror=refuse):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            p = Path(root) / name
            try:
                if p.is_file():  # not FIFOs, sockets or devices (they may block or never end)
                    found.append(p)
            except PermissionError as exc:
                raise _unreadable(p, exc) from None
    return found


def _kind(path: Path) -> str:
    """``"dir"``, ``"file"`` or ``"other"`` for an existing path; a CorpusError otherwise."""
    try:
        st = path.stat()
    except OSError as exc:
        try:
            link = path.is_symlink()
        except OSError:
            link = False
        if link:
            raise CorpusError(f"{path}: broken or looping symbolic link") from None
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            raise CorpusError(f"{path}: no such file or folder") from None
        raise _unreadable(path, exc) from None
    return "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"


def read_corpus(paths: Sequence[str | os.PathLike] | None = None) -> Corpus:
    """Find and check the training text (read once through, in chunks; nothing is kept).

    Parameters
    ----------
    paths : sequence of file or folder paths, or None
        ``None`` (or empty) reads the default corpus. A file named directly must be
        UTF-8 text; inside a folder, files that are not UTF-8 text are skipped.

    Raises
    ------
    CorpusError
        For a missing path, an unreadable file or folder (even inside a folder), a
        non-UTF-8 file named directly, an empty file, a folder without text, or an
        empty corpus.
    """
    if not paths:
        files = default_corpus_files()
        sizes = [_check(f) for f in files]
        return Corpus(tuple(str(f) for f in files), sum(sizes) + len(files) - 1)
    used: list[str] = []
    nbytes = 0
    for raw in paths:
        if str(raw) == "":
            raise CorpusError("an empty path was given (a file or folder name was expected)")
        path = Path(raw)
        kind = _kind(path)
        if kind == "dir":
            found = 0
            for f in _walk(path):
                try:
                    size = _check(f)
                except _NotTextError:
                    continue  # folders may hold images, archives, …: train on the text only
                if size:
                    used.append(str(f))
                    nbytes += size
                    found += 1
            if not found:
                raise CorpusError(f"{path}: folder holds no non-empty UTF-8 text files")
        elif kind == "file":
            size = _check(path)
            if not size:
                raise CorpusError(f"{path}: file is empty")
            used.append(str(path))
            nbytes += size
        else:
            raise CorpusError(f"{path}: not a regular file (a FIFO, socket or device?)")
    return Corpus(tuple(used), nbytes + len(used) - 1)


def encode_corpus(corpus: Corpus, vocab: Vocabulary, *, strict: bool = True) -> tuple[np.ndarray, str]:
    """The token ids of ``corpus`` (1-D, ``vocab.id_dtype``) and their digest, encoded chunk by chunk.

    The digest is the SHA-256 of the ids as int32, whatever dtype holds them (the digest
    checkpoints have always recorded). Memory: the ids, at most ``corpus.nbytes`` of them,
    plus one chunk's temporaries; no copy of the text is held.

    Raises
    ------
    ValueError
        For text outside ``vocab`` (see :meth:`Vocabulary.encode_chunks`).
    CorpusError
        If a file changed since :func:`read_corpus` checked it.
    """
    ids = np.empty(max(corpus.nbytes, 1), vocab.id_dtype)  # one token per byte at most; untouched pages cost nothing
    digest, n = hashlib.sha256(), 0
    for piece in vocab.encode_chunks(corpus.chunks(), strict=strict):
        if n + len(piece) > len(ids):
            more = f" (and {len(corpus.files) - 1} more files)" if len(corpus.files) > 1 else ""
            raise CorpusError(
                f"{corpus.files[0]}{more}: the text changed while being read "
                f"(more than the {corpus.nbytes} bytes checked)"
            )
        ids[n : n + len(piece)] = piece
        digest.update(piece.astype(np.int32).tobytes())
        n += len(piece)
    ids.resize(n, refcheck=False)  # shrink in place (no copy): no view of ids exists yet
    return ids, digest.hexdigest()
