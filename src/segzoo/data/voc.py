"""Pascal VOC segmentation through torchvision's reader, returned as tensors like the other datasets."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from .pairs import PairTransform, image_to_tensor, mask_to_tensor
from .palettes import VOC_CLASSES
from .palettes import palette as voc_palette


class VOCSegmentation(Dataset[tuple[Tensor, Tensor]]):
    """Pascal VOC semantic segmentation, read by ``torchvision.datasets.VOCSegmentation``.

    ``root`` is the folder that holds ``VOCdevkit`` (torchvision's layout, e.g.
    ``root/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}``); segzoo never
    downloads it. 21 classes (background first); 255 marks object borders and "difficult" regions
    and is the ``ignore_index``.

    ``ds[i]`` is ``(image, mask)``: uint8 (3, H, W) and int64 (H, W), or whatever ``transforms``
    makes of them.
    """

    num_classes = 21
    ignore_index = 255
    layout = "voc"
    palette = voc_palette(21)
    class_names = VOC_CLASSES

    def __init__(
        self,
        root: str | os.PathLike,
        year: str = "2012",
        image_set: str = "train",
        transforms: PairTransform | None = None,
    ) -> None:
        from torchvision.datasets import VOCSegmentation as TorchvisionVOC

        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be a callable (image, mask) -> (image, mask), got {type(transforms).__name__}")
        root = Path(root)
        try:
            self.voc = TorchvisionVOC(str(root), year=year, image_set=image_set, download=False)
        except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
            raise FileNotFoundError(
                f"Pascal VOC {year} not found: expected the VOCdevkit folder in {root} "
                f"(e.g. {root / 'VOCdevkit' / f'VOC{year}'} with JPEGImages/, SegmentationClass/ and "
                "ImageSets/Segmentation/). segzoo does not download it; fetch and extract the VOC archive there"
            ) from err
        except FileNotFoundError as err:  # the folder is there but the split list is not
            split_dir = Path(err.filename).parent if err.filename else root
            present = sorted(p.stem for p in split_dir.glob("*.txt")) if split_dir.is_dir() else []
            raise FileNotFoundError(
                f"Pascal VOC {year} split list {err.filename} not found; image sets present: {present}"
            ) from err
        self.transforms = transforms

    @property
    def samples(self) -> list[tuple[Path, Path]]:
        """``(image_path, mask_path)`` pairs, in the image set's order."""
        return [(Path(image), Path(mask)) for image, mask in zip(self.voc.images, self.voc.masks)]

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_file, mask_file = self.voc[index]  # PIL: RGB image, palette mask whose index is the class
        image, mask = image_to_tensor(image_file), mask_to_tensor(mask_file)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask
