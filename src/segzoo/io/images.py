"""Image files as the models take them: the pixels a viewer shows, as 8-bit RGB.

* **Orientation**: the EXIF orientation tag (phone photos store the sensor's pixels and a tag
  that rotates them for display) is applied (``PIL.ImageOps.exif_transpose``), in datasets, for
  masks too, and in prediction, so that a photo trains and predicts as it is seen.
* **Bit depth**: 16-bit images (PIL modes ``I;16``, ``I;16B``, ...; 16-bit PNG and TIFF) are
  scaled from 0..65535 to 0..255 (``round(v / 257)``), as for display, instead of being clipped to
  255. 32-bit integer images (mode ``I``, as some readers give 16-bit files) are taken as 16-bit
  when every value lies in 0..65535 and refused otherwise; floating-point images (mode ``F``) are
  refused: neither has a defined range to scale from. Refusals are a ``ValueError`` naming the mode.
* Every other mode is converted to RGB by PIL: grayscale (``L``, ``1``) is replicated into the
  three channels, the alpha channel of ``RGBA`` / ``LA`` / ``PA`` is dropped (the colours are kept
  as stored, not blended onto a background), ``P`` is looked up in its palette, ``CMYK`` converted.
* **Channels for the model**: datasets and ``predict`` read RGB; :func:`to_channels` then gives a
  model with ``in_channels=1`` the luma of it (ITU-R 601-2, exactly PIL's ``convert("L")``, so a
  grayscale file comes back unchanged).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

#: the EXIF tag of the orientation, and the orientations that swap width and height
ORIENTATION_TAG = 0x0112
_TRANSPOSED = frozenset({5, 6, 7, 8})
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_UINT16_MAX = 65535


def oriented(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation asks (``image`` itself when it has none)."""
    return ImageOps.exif_transpose(image)


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of ``image`` as shown, after its EXIF orientation, without decoding it."""
    width, height = image.size
    return (height, width) if image.getexif().get(ORIENTATION_TAG) in _TRANSPOSED else (width, height)


def check_mode(image: Image.Image) -> None:
    """``ValueError`` unless :func:`rgb_array` can read ``image``: mode ``F``, or mode ``I`` with
    values outside 0..65535 (decodes ``image`` for the latter)."""
    if image.mode == "F":
        raise ValueError(
            "floating-point images (PIL mode 'F') have no defined value range, so segzoo refuses them; "
            "expected 8-bit or 16-bit images: convert it first (e.g. scale to 0..255 and save as 8-bit)"
        )
    if image.mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > _UINT16_MAX):
            raise ValueError(
                f"32-bit integer images (PIL mode 'I') are read as 16-bit, but this one holds values "
                f"{int(values.min())}..{int(values.max())} outside 0..{_UINT16_MAX}; expected 8-bit or 16-bit images"
            )


def rgb_array(image: Image.Image) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of ``image`` as shown: oriented, 16-bit scaled, RGB (see the module)."""
    check_mode(image)
    image = oriented(image)
    if image.mode in _SIXTEEN_BIT or image.mode == "I":
        scaled = np.rint(np.asarray(image) / 257).astype(np.uint8)  # 0..65535 onto 0..255
        return np.repeat(scaled[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


# PIL's fixed-point luma weights (ITU-R 601-2: 0.299, 0.587, 0.114 scaled by 2**16; they sum to 2**16)
_LUMA = (19595, 38470, 7471)


def to_channels(image: Tensor, channels: int) -> Tensor:
    """A uint8 RGB image (..., 3, H, W) as ``channels`` channels: itself for 3, its luma
    (``(19595 R + 38470 G + 7471 B + 2**15) >> 16``, PIL's ``convert("L")``) for 1. Other counts
    are a ``ValueError``: image files hold RGB or grey, so such models need a dataset of their own."""
    if image.dtype != torch.uint8 or image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"expected a uint8 RGB image (..., 3, H, W), got {image.dtype} {tuple(image.shape)}")
    if channels == 3:
        return image
    if channels == 1:
        r, g, b = image.to(torch.int32).unbind(-3)
        return ((_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b + (1 << 15)) >> 16).to(torch.uint8).unsqueeze(-3)
    raise ValueError(
        f"image files give RGB (3 channels) or grayscale (1), not {channels} channels; a model with "
        f"in_channels={channels} needs a dataset that produces them"
    )
