"""InMemoryDataset: decoded once, served unchanged, refused when it would not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segzoo.data import DataConfig, InMemoryDataset, SegmentationFolder, eval_transforms
from segzoo.data import cache as cache_module
from segzoo.data.cache import available_memory, estimate_bytes


def _folder(root, sizes=((12, 16), (10, 14), (9, 20))) -> SegmentationFolder:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        mask = rng.integers(0, 3, (h, w)).astype(np.uint8)
        mask[0, 0] = 255
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i}.png")
    return SegmentationFolder(root / "images", root / "masks", 3, 255, class_names=("a", "b", "c"))


def test_items_are_those_of_the_dataset_and_transforms_run_per_item(tmp_path):
    dataset = _folder(tmp_path)
    transform = eval_transforms((0.5,) * 3, (0.25,) * 3)
    dataset.transforms = transform
    cached = InMemoryDataset(dataset)
    assert dataset.transforms is transform, "the wrapped dataset's transforms are put back"
    assert len(cached) == 3 and cached.num_classes == 3 and cached.ignore_index == 255 and cached.class_names == ("a", "b", "c")
    dataset.transforms = None
    for i in range(3):
        image, mask = cached[i]
        expected_image, expected_mask = dataset[i]
        assert image.dtype == torch.uint8 and torch.equal(image, expected_image)
        assert mask.dtype == torch.int64 and torch.equal(mask, expected_mask)
    assert cached.masks[0].dtype == torch.uint8, "labels below 256 take one byte"
    cached.transforms = transform
    torch.testing.assert_close(cached[1][0], transform(*dataset[1])[0], rtol=0, atol=0)


def test_the_estimate_is_four_bytes_per_pixel_from_the_headers(tmp_path):
    dataset = _folder(tmp_path)
    assert estimate_bytes(dataset) == 4 * (12 * 16 + 10 * 14 + 9 * 20)
    assert InMemoryDataset(dataset).nbytes == estimate_bytes(dataset)


def test_a_split_that_would_not_fit_is_refused_before_decoding(tmp_path, monkeypatch):
    dataset = _folder(tmp_path)
    monkeypatch.setattr(SegmentationFolder, "__getitem__", lambda self, i: pytest.fail("decoded before the check"))
    with pytest.raises(ValueError, match=r"caching the training split in memory needs .* MiB.*--no-cache"):
        InMemoryDataset(dataset, available_bytes=2 * estimate_bytes(dataset) - 1, name="training split")


def test_available_memory_takes_the_smaller_of_meminfo_and_the_cgroup_limit(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(cache_module, "_MEMINFO", meminfo)
    monkeypatch.setattr(cache_module, "_CGROUP", cgroup)
    assert available_memory() == 8000000 * 1024
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory() == 8000000 * 1024
    (cgroup / "memory.max").write_text(f"{4 * 2**30}\n")
    (cgroup / "memory.current").write_text(f"{2**30}\n")
    assert available_memory() == 3 * 2**30


def test_cached_training_equals_uncached_training(tmp_path):
    """The cache changes where bytes come from, not what the model learns: same weights."""
    import segzoo
    from segzoo.training import TrainConfig, train

    def run(cache: bool, out):
        dataset = _folder(tmp_path / f"data-{cache}", sizes=((16, 16),) * 4)
        val = SegmentationFolder(dataset.images_dir, dataset.masks_dir, 3, 255)
        torch.manual_seed(0)
        model = segzoo.SegNetBasic(3)
        data = DataConfig(batch_size=2, crop_size=(12, 12), cache=cache)
        train(model, dataset, val, out, TrainConfig(epochs=1, lr=1e-2), data, progress=False)
        return model

    plain, cached = run(False, tmp_path / "plain"), run(True, tmp_path / "cached")
    for (key, a), b in zip(plain.state_dict().items(), cached.state_dict().values()):
        assert torch.equal(a, b), key
    assert segzoo.io.checkpoint.load_checkpoint(tmp_path / "cached" / "last.pt")["run"]["data"]["cache"] is True
