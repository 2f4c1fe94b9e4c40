"""Writing files so that a crash or interrupt leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Yield a file in ``path``'s folder that replaces ``path`` only once it is completely written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "x") rather than tempfile.mkstemp: mkstemp's 0600 mode would end up on the file
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the rename must not reach the disk before the data does
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
