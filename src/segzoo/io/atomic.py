"""Writing files so that a crash or interrupt leaves the old file or the new one, never half of one.

The data is synced before the rename and the folder after it, so that once :func:`atomic_write`
returns, a power loss brings back the new file, not the old entry.

A writer killed outright (SIGKILL, power loss) cannot remove its temporary file. The next write
to the same target removes such leftovers: siblings named exactly as :func:`atomic_write` names
its temporaries whose writer is gone. A writer holds an exclusive ``flock`` on its temporary
until it renames it, and the kernel drops that lock when the process dies, so a lock that can be
taken marks a leftover; a live writer's file is never touched. Where ``flock`` does not exist
(Windows), an open file cannot be deleted, which protects live writers the same way.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Yield a file in ``path``'s folder that replaces ``path`` only once it is completely written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    temporary, file = _create_locked(target)
    try:
        with file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the rename must not reach the disk before the data does
            if fcntl is not None:  # renamed under the lock, so no cleanup can take the file first
                os.replace(temporary, target)
        if fcntl is None:  # Windows cannot rename an open file
            os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)  # the rename itself is a change of the folder, durable only once synced


def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a completed rename) to disk, where the platform allows it."""
    if os.name == "nt":  # no directory handles to sync; NTFS journals the rename
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a folder; the data itself is synced already
        pass
    finally:
        os.close(descriptor)


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that writers of ``target`` killed mid-write left behind; return them."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{8}}\.tmp")
    try:
        names = [name for name in os.listdir(target.parent) if pattern.fullmatch(name)]
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        candidate = target.parent / name
        # kept whenever it cannot be opened, locked or removed: when in doubt, delete nothing
        with suppress(OSError):
            if fcntl is None:
                candidate.unlink()  # refused while a live writer holds the file open
            else:
                with open(candidate, "rb") as file:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    candidate.unlink()
            removed.append(candidate)
    return removed


def _create_locked(target: Path) -> tuple[Path, IO[bytes]]:
    """Create and lock a fresh temporary next to ``target``."""
    while True:
        # open(..., "x") rather than tempfile.mkstemp: mkstemp's 0600 mode would end up on the file
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        file = open(temporary, "xb")
        if fcntl is None:
            return temporary, file
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks, where no cleanup can lock (and remove) it either
            return temporary, file
        # another writer's cleanup may have locked and removed the file between open and flock
        with suppress(FileNotFoundError):
            if os.stat(temporary).st_ino == os.fstat(file.fileno()).st_ino:
                return temporary, file
        file.close()


def check_writable_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` if files can be written into it (it exists as a writable folder, or can be created
    as one): ``ValueError`` naming the problem otherwise, before any work is done. Nothing is
    written; write permission is what ``os.access`` says (so also a read-only file system)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} is a file, not a folder; choose another path")
    existing = next(candidate for candidate in (folder, *folder.parents) if candidate.exists() or candidate == Path(candidate.anchor))
    if existing != folder and not existing.is_dir():
        raise ValueError(f"{what} {folder} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        place = "it" if existing == folder else f"{existing}"
        raise ValueError(f"{what} {folder} is not writable: {place} is read-only (permissions or file system)")
    return folder


def check_writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path`` if :func:`atomic_write` can write it: not a folder, in a folder that is (or can be
    created) writable; ``ValueError`` otherwise, before any work is done."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{what} {target} is an existing folder; give a file name (e.g. {target / 'model.onnx'})")
    check_writable_folder(target.parent, f"the folder of {what} {target}")
    return target
