"""Reading files written by ``torch.save`` safely: verified first, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import re
import struct
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_MAGIC = b"\x80"  # the older format: a bare pickle stream (protocol >= 2)


def read_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` that verifies the file first and says what is wrong.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming ``path`` for an
    empty, truncated or corrupted file ("truncated or corrupted"), for a file in neither of
    ``torch.save``'s formats ("not a PyTorch file") and for one holding pickled Python objects
    that weights_only loading refuses (nothing in it is ever executed). The error that revealed
    the problem is chained.

    Numpy scalars (``np.float64(0.63)``, as trainers save metrics such as pytorch-fcn's
    ``best_mean_iu`` or pytorch-semseg's ``best_iou``) are plain data and are read: the few globals
    that rebuild a numeric numpy scalar and its dtype are allowed for this read only (see
    :func:`_numpy_scalars_allowed`); numpy arrays and every other global stay refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as file:
        head = file.read(len(_ZIP_MAGIC))
    if not head:
        raise ValueError(f"{path} is truncated or corrupted: the file is empty")
    is_zip = _ZIP_MAGIC.startswith(head)  # a prefix only: a file cut within its first bytes
    if not is_zip and not head.startswith(_PICKLE_MAGIC):
        raise ValueError(
            f"{path} is not a PyTorch file: it starts with {head!r}, neither a zip archive (torch.save) "
            "nor a pickle (torch.save before PyTorch 1.6)"
        )
    if is_zip:
        try:
            _verify_zip(path)
        except Exception as error:  # zipfile reports damage in many ways; none of them is the caller's doing
            raise ValueError(f"{path} is truncated or corrupted: {type(error).__name__}: {error}") from error
    try:
        with _numpy_scalars_allowed():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch raises this for every stream its weights-only unpickler stops at: refused objects
        # and, in the unchecksummed pre-1.6 format, damaged bytes alike
        refused = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
        named = f" (it names {refused.group(1)})" if refused else ""
        unverified = "" if is_zip else ", or it is corrupted (its pre-1.6 format carries no checksums)"
        raise ValueError(
            f"{path} contains pickled Python objects that weights_only loading refuses{named}{unverified}; "
            "segzoo never runs code from a file. A whole nn.Module saved with torch.save(model)? Save its state dict "
            "(model.state_dict()) instead; if you trust the file, convert it: torch.load(..., weights_only=False), "
            "then torch.save only tensors and plain values"
        ) from error
    except (EOFError, RuntimeError, KeyError, IndexError, ValueError, AssertionError, struct.error) as error:
        # in a zip, only PytorchStreamReader's RuntimeErrors mean damage; others are e.g. a CUDA map_location without CUDA
        if is_zip and isinstance(error, RuntimeError) and "PytorchStreamReader" not in str(error):
            raise
        raise ValueError(f"{path} is truncated or corrupted: {type(error).__name__}: {error}") from error


def _verify_zip(path: Path) -> None:
    """Read every member of the archive, checking the CRC-32 that ``torch.save`` records:
    ``torch.load`` checks none, so a flipped bit inside a tensor would otherwise load silently."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.CRC == 0:  # torch.serialization.set_crc32_options(False) writes no checksums
                continue
            with archive.open(info) as member:
                while member.read(1 << 24):
                    pass


# dtypes of the numeric numpy scalars a trainer may save (bool, integers, floats); not object, not
# strings, not datetimes
_NUMPY_SCALAR_DTYPES = ("?", "b", "h", "i", "l", "q", "B", "H", "I", "L", "Q", "e", "f", "d")
# safe_globals exists since PyTorch 2.5 and takes (global, "its pickled name") pairs since 2.6
_HAS_SAFE_GLOBALS = hasattr(torch.serialization, "safe_globals")
_TORCH_ALLOWS_ALIASES = torch.__version__ >= "2.6"
# torch's allowlist is one process-wide set: reads that change it take turns
_ALLOWLIST_LOCK = threading.Lock()


@contextmanager
def _numpy_scalars_allowed() -> Iterator[None]:
    """Allow, for the duration of the block only, what unpickling a numeric numpy scalar needs:
    numpy's ``scalar`` reconstructor (pickled as ``numpy._core.multiarray.scalar`` by numpy 2,
    ``numpy.core.multiarray.scalar`` by numpy 1), ``numpy.dtype`` and the classes of the numeric
    dtypes (whose ``__setstate__`` only sets byte order and flags). Entries the caller had already
    allowed stay allowed afterwards; the ones added here are removed. Without ``safe_globals``
    (PyTorch 2.4) nothing is added and numpy scalars stay refused.
    """
    if not _HAS_SAFE_GLOBALS:
        yield
        return
    reconstruct = np.float64(0).__reduce__()[0]
    wanted: list[Any] = [np.dtype, *sorted({type(np.dtype(code)) for code in _NUMPY_SCALAR_DTYPES}, key=str)]
    if _TORCH_ALLOWS_ALIASES:
        wanted += [(reconstruct, f"{module}.multiarray.scalar") for module in ("numpy._core", "numpy.core")]
    else:  # only the name the installed numpy pickles it under
        wanted.append(reconstruct)
    with _ALLOWLIST_LOCK:
        already = set(torch.serialization.get_safe_globals())
        with torch.serialization.safe_globals([entry for entry in wanted if entry not in already]):
            yield
