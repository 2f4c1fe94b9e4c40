"""examples/table1.py end to end on the synthetic shapes (seconds), in process."""

import importlib.util
from pathlib import Path

import pytest

import segzoo

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "table1.py"


@pytest.fixture(scope="module")
def table1():
    spec = importlib.util.spec_from_file_location("table1_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_are_registered_models(table1):
    assert set(table1.VARIANTS) <= set(segzoo.list_models())
    assert len(table1.VARIANTS) == 8 and all(len(row) == 4 for row in table1.PAPER.values())


def test_trains_the_chosen_variants_and_prints_the_table(table1, tmp_path, capsys):
    rows = table1.main(["--synthetic", "--epochs", "1", "--size", "16", "24", "--images", "8", "--batch-size", "8",
                        "--variants", "fcn_basic", "segnet_basic_encoder_addition", "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert [row["name"] for row in rows] == ["fcn_basic", "segnet_basic_encoder_addition"]
    assert all(0 <= row[key] <= 100 for row in rows for key in ("G", "C", "mIoU"))
    assert "| variant | params (M) | paper params (M) | G | C | mIoU | paper G | paper C | paper mIoU |" in out
    assert "| fcn_basic | 0.617 | 0.65 |" in out  # 4 synthetic classes: 612,032 + 5 * 260 + 4 * 1,024
    assert "| segnet_basic |" not in out  # not asked for
    assert (tmp_path / "fcn_basic" / "best.pt").is_file()
    assert segzoo.load(tmp_path / "segnet_basic_encoder_addition" / "best.pt").num_classes == 4


def test_rejects_an_unknown_variant(table1):
    with pytest.raises(SystemExit):
        table1.main(["--synthetic", "--variants", "segnet"])
