"""The examples run end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import segzoo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def _run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def test_quickstart(tmp_path):
    out = _run([EXAMPLES / "quickstart.py", "--size", "40", "56"], tmp_path)
    assert out.count("| (1, 11, 40, 56) |") == len(segzoo.list_models())


def test_notebook_is_stored_executed_and_small():
    notebook = json.loads((EXAMPLES / "finetune_synthetic.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] for cell in code), "every code cell keeps its output"
    assert not any(o["output_type"] == "error" for cell in code for o in cell["outputs"])
    assert (EXAMPLES / "finetune_synthetic.ipynb").stat().st_size < 100_000


@pytest.mark.slow
def test_notebook_code_runs(tmp_path):
    """The notebook's code cells, run in order as one script (no Jupyter needed), its training
    shortened to one epoch of 64 images: every line runs, in a tenth of the time (224 s in full on
    a 2-core AVX2 EPYC). The demo test trains the same model on the same shapes to its target."""
    notebook = json.loads((EXAMPLES / "finetune_synthetic.ipynb").read_text())
    script = "\n\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    for full, short in {"TrainConfig(epochs=6,": "TrainConfig(epochs=1,", "SyntheticShapes(512,": "SyntheticShapes(64,"}.items():
        assert script.count(full) == 1, f"the notebook no longer holds {full!r}: update the shortening here"
        script = script.replace(full, short)
    (tmp_path / "notebook.py").write_text(script)
    out = _run([tmp_path / "notebook.py"], tmp_path)
    assert "64 training images" in out and "epoch 1:" in out and "epoch 2:" not in out and "| global acc |" in out
    assert (tmp_path / "notebook-run" / "best.pt").is_file() and (tmp_path / "notebook-run" / "predictions.png").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not (CAMVID / "train").is_dir(), reason="CamVid not present at ../shared/data/camvid")
def test_camvid_script_one_short_epoch(tmp_path):
    out = _run([EXAMPLES / "camvid.py", "--data", CAMVID, "--epochs", "1", "--size", "45", "60", "--out", tmp_path / "run"], tmp_path)
    assert "camvid-segnet-basic: 1 epochs at 45x60" in out and "| Pedestrian |" in out
    assert (tmp_path / "run" / "best.pt").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not (CAMVID / "train").is_dir(), reason="CamVid not present at ../shared/data/camvid")
def test_camvid_bayesian_recipe_scores_monte_carlo_dropout(tmp_path):
    out = _run([EXAMPLES / "camvid.py", "--data", CAMVID, "--recipe", "camvid-bayesian-segnet-basic", "--epochs", "1",
                "--size", "45", "60", "--mc", "2", "--out", tmp_path / "run"], tmp_path)  # fmt: skip
    assert "Monte Carlo dropout, 2 samples:" in out
    assert out.count("| global acc | class avg acc | mIoU | BF | fwIoU | ECE |") == 2
