"""ADE20K as the MIT Scene Parsing benchmark ships it (``ADEChallengeData2016``; never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

from .folder import _pair_by_stem
from .labelmaps import LabelMap
from .pairs import PairedDataset, PairTransform
from .palettes import palette

#: the split names segzoo uses (``train``, ``val``) and the benchmark's folders
SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


class ADE20K(PairedDataset):
    """ADE20K scene parsing: ``root/ADEChallengeData2016/images/{training,validation}/*.jpg`` with
    ``.../annotations/{training,validation}/*.png`` of the same stem (``root`` may also be the
    ``ADEChallengeData2016`` folder itself). ``split``: ``train`` / ``val`` (or the folder names).

    150 classes: annotation value k in 1..150 is class k - 1 and 0 ("other objects") is ignored
    (reduce-zero-label, the built-in label map ``"ade20k-reduce-zero"``), so ``ignore_index`` is
    255. Class names are the benchmark's (objectInfo150, first name of each); colours are the
    PASCAL VOC colour map. Every image must have its annotation and the reverse.
    """

    CLASS_NAMES = (
        "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
        "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
        "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
        "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
        "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
        "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
        "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
        "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
        "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
        "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
        "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
        "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
        "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
        "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
        "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
        "glass", "clock", "flag",
    )  # fmt: skip
    IGNORE_INDEX = 255
    layout = "ade20k"

    def __init__(self, root: str | os.PathLike, split: str = "train", transforms: PairTransform | None = None) -> None:
        root = Path(root)
        if split not in SPLITS:
            raise ValueError(f"ADE20K split must be one of {sorted(SPLITS)}, got {split!r}")
        base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
        if not (base / "images").is_dir() or not (base / "annotations").is_dir():
            raise FileNotFoundError(
                f"ADE20K not found in {root}: expected ADEChallengeData2016/images/ and annotations/ there "
                "(ADEChallengeData2016.zip unpacked). segzoo does not download ADE20K"
            )
        folder = SPLITS[split]
        samples = _pair_by_stem(base / "images" / folder, base / "annotations" / folder)
        super().__init__(
            samples, len(self.CLASS_NAMES), self.IGNORE_INDEX, self.CLASS_NAMES, transforms, palette(150),
            label_map=LabelMap.named("ade20k-reduce-zero"),
        )  # fmt: skip
        self.root = root
        self.split = split
