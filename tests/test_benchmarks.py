"""The benchmark scripts that no other test runs end to end, on tiny data (their timings are not
checked: speed is measured by running them, not in tests)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from segzoo.inference.eager_int8 import eager_int8_available

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


def test_fast_paths_times_the_eager_paths_and_scores_a_checkpoint(tmp_path):
    """benchmarks/fast_paths.py with a trained checkpoint: a timing row per variant and, on the val
    split, each path's mIoU difference and argmax agreement with the fp32 eager model."""
    from segzoo.cli import main

    data = _tiny_camvid(tmp_path / "camvid")
    out = tmp_path / "run"
    assert main(["train", "--model", "segnet_basic", "--layout", "camvid", "--data", str(data), "--epochs", "1",
                 "--batch-size", "2", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    run = subprocess.run(
        [sys.executable, BENCHMARKS / "fast_paths.py", "--checkpoint", out / "last.pt", "--data", data, "--batches", "1",
         "--size", "48", "64", "--reps", "1", "--variants", "fused", "optimize fp32 eager", "optimize int8 eager"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    int8 = ["optimize int8 eager"] if eager_int8_available() else []
    for variant in ("reference", "fused", "optimize fp32 eager", *int8):
        assert f"| segnet_basic | 1 | {variant} |" in run.stdout
    for variant in ("fused", "optimize fp32 eager"):
        assert f"| segnet_basic | val | {variant} | ΔmIoU +0.00 points | agreement 100.00% | within bounds |" in run.stdout
    for variant in int8:  # scored like the others; a one-epoch model's bounds say nothing of int8
        assert f"| segnet_basic | val | {variant} | ΔmIoU " in run.stdout


def test_small_map_backward_prints_both_layers_side_by_side():
    """benchmarks/small_map_backward.py, its layer rows only, on maps where both kernels are fast."""
    run = subprocess.run(
        [sys.executable, BENCHMARKS / "small_map_backward.py", "--maps", "8x10", "--models", "--repeats", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line.split() for line in run.stdout.splitlines() if " maps " in line]
    assert [row[:4] for row in rows] == [["fc6", "on", "8x10", "maps"], ["deconv-fc6", "on", "8x10", "maps"]]
    for row in rows:  # explicit s, plain s, ratio
        explicit, plain, ratio = float(row[4]), float(row[6]), float(row[8].rstrip("x"))
        assert abs(plain / explicit - ratio) <= 0.06 * ratio + 0.05
