"""The benchmark scripts that no other test runs end to end, on tiny data (their timings are not
checked: speed is measured by running them, not in tests)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _tiny_camvid(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("val", 1)):
        for i in range(count):
            for folder, array in ((split, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)),
                                  (f"{split}annot", rng.integers(0, 12, (48, 64), dtype=np.uint8))):  # fmt: skip
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / folder / f"f{i}.png")
    return root


def test_recipe_throughput_runs_a_recipe_with_adamw(tmp_path):
    """camvid-segnet-basic is an AdamW recipe (no momentum field); the script read one and crashed."""
    data = _tiny_camvid(tmp_path / "camvid")
    run = subprocess.run(
        [sys.executable, BENCHMARKS / "recipe_throughput.py", "--data", data, "--steps", "1", "--warmup", "1", "--batch-size", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "camvid-segnet-basic: batch 1 at 360x480" in run.stdout and "images/s" in run.stdout
