"""examples/table1.py end to end on the synthetic shapes (seconds), in process."""

import importlib.util
from pathlib import Path

import pytest

import segzoo
from segzoo.recipes import load_recipe

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


def test_every_row_trains_with_its_recipe_and_only_the_budget_overridden(table1):
    """One source of truth: each row's settings are its camvid-<variant> recipe's, but for the
    epochs, the batch size and the resolution (CamVid's scale range reduced with it)."""
    synthetic = table1.parse_args(["--synthetic", "--epochs", "2", "--size", "16", "24", "--batch-size", "3"])
    camvid = table1.parse_args(["--data", "camvid", "--size", "90", "120"])
    for name in table1.VARIANTS:
        recipe = load_recipe(table1.recipe_name(name))
        assert recipe.options["model"] == name
        options = recipe.options
        config, data = table1.configs(recipe, camvid)
        assert (data.crop_size, data.eval_size, data.train_scale) == ((90, 120), (90, 120), (0.25, 0.375))  # 1-1.5 x 90/360
        config, data = table1.configs(recipe, synthetic)
        assert (config.epochs, data.batch_size, data.crop_size, data.eval_size) == (2, 3, (16, 24), (16, 24))
        assert data.train_scale == options["train_scale"] == (1.0, 1.5)
        assert (config.optimizer, config.lr, config.weight_decay, config.schedule) == (
            options["optimizer"], options["lr"], options["weight_decay"], options["schedule"])  # fmt: skip
        assert (config.amp, config.channels_last, data.class_weights, data.cache) == (
            options["amp"], options["channels_last"], options["class_weights"], options["cache"])  # fmt: skip
        assert (config.optimizer, config.lr, data.class_weights) == ("adamw", 5e-4, "sqrt-median")  # camvid-segnet-basic's
        assert config.val_every == options["val_every"] == 4


def test_a_recipe_field_the_script_does_not_apply_is_refused(table1):
    args = table1.parse_args(["--synthetic"])
    recipe = load_recipe("camvid-fcn-basic").merged({"freeze_encoder": True})
    with pytest.raises(ValueError, match=r"sets \['freeze_encoder'\], which examples/table1.py does not apply"):
        table1.configs(recipe, args)


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
