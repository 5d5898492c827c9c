"""Crash-safe file writes: a temporary file in the same folder, fsync, then rename.

``os.replace`` is atomic on POSIX and Windows when source and destination are
on the same file system, which a temporary file in the destination's folder
guarantees. A crash at any moment leaves either the old file or the new one,
never a half-written file under the real name.

**Temporary files left by a crash.** A process killed (``kill -9``, power loss) while
it writes leaves its temporary file behind. Each one is named
``.<name>.<pid>-<random>.tmp``, with the writer's process id, and every later write
of ``<name>`` (and :func:`remove_stale_temps`, which a resumed run calls) deletes those
of ``<name>`` that are *stale*:

- its writer (``<pid>``) is no longer running on this machine, or is this very process
  but not writing it now (a container restarted with the same process id), or
- it was last modified more than :data:`STALE_AFTER` seconds ago (a process id may
  have been reused; no write takes that long). Leftovers of older bptt versions,
  ``.<name>.<random>.tmp`` without a process id, go by this rule alone.

So a write in progress is never touched: its process is alive and its file is fresh.
Nothing else is removed, not even the temporary files of other names in the folder.
Process ids are only compared on one machine: two machines writing the same file
in a shared folder at the same time is not supported (it is not safe anyway).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["STALE_AFTER", "remove_stale_temps", "write_atomic"]

STALE_AFTER = 3600.0  # seconds without a change after which any temporary file is a crash's leftover
_writing: set[str] = set()  # the temporary files this process is writing now (absolute paths)
_writing_lock = threading.Lock()  # a file joins _writing as it is created, before another thread can judge it


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (text is written as UTF-8).

    Raises
    ------
    OSError
        When the folder is missing or not writable, or the disk is full; ``path`` is then
        untouched, and the message names it.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    remove_stale_temps(path)
    try:
        with _writing_lock:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
            _writing.add(tmp)  # mkstemp's path is absolute
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    finally:
        _writing.discard(tmp)
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the stale temporary files that crashed writes of ``path`` left (see the module docstring).

    Returns the files removed. Never raises for a file it cannot remove or a folder it
    cannot list: cleaning up must not make a save fail.
    """
    path = Path(path)
    own = re.compile(re.escape(f".{path.name}.") + r"(?:(\d+)-)?[a-z0-9_]{8}\.tmp")  # mkstemp's 8 random characters
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = own.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER
            pid = None if match[1] is None else int(match[1])
            with _writing_lock:
                if pid == os.getpid():
                    orphan = os.path.abspath(entry.path) not in _writing
                else:
                    orphan = pid is not None and not _running(pid)
                if old or orphan:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
        except OSError:  # gone already (another cleaner), or not ours to delete
            continue
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (unsure counts as yes)."""
    if os.name != "posix":  # no signal 0 to probe with (on Windows, os.kill(pid, 0) sends Ctrl-C)
        return True
    if not 0 < pid < 2**31:
        return False  # cannot be a process id at all
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user's process
        return True
    return True


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path``: a failed write or fsync (a full disk) names no file, mkstemp the temporary one."""
    if exc.errno is None:
        return OSError(f"cannot write {path}: {exc}")
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
