"""Image files as the models take them: the pixels a viewer shows, as 8-bit RGB.

* **Orientation**: the EXIF orientation tag (phone photos store the sensor's pixels and a tag
  that rotates them for display) is applied (``PIL.ImageOps.exif_transpose``), in datasets, for
  masks too, and in prediction, so that a photo trains and predicts as it is seen.
* **Bit depth**: 16-bit images (PIL modes ``I;16``, ``I;16B``, ...; 16-bit PNG and TIFF) are
  scaled from 0..65535 to 0..255 (``round(v / 257)``), as for display, instead of being clipped to
  255. 32-bit integer images (mode ``I``, as some readers give 16-bit files) are taken as 16-bit
  when every value lies in 0..65535 and refused otherwise; floating-point images (mode ``F``) are
  refused: neither has a defined range to scale from. Refusals are a ``ValueError`` naming the mode.
* Every other mode (``L``, ``P``, ``RGBA``, ``CMYK``, ``1``, ...) is converted to RGB by PIL.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

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
