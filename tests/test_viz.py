"""Visualisation: colours, overlays and PNGs against independent computations (also under hostile
input, with hypothesis); atomic writes; plots."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from support.properties import (
    CASES,
    IGNORES,
    LABEL_DTYPES,
    assert_names_labels,
    assert_rejected,
    assert_works_or_clear_error,
)

from segzoo import viz
from segzoo.viz import (
    CAMVID_PALETTE,
    colorize,
    overlay,
    palette,
    plot_confusion_matrix,
    plot_curves,
    prediction_grid,
    save_mask_png,
    save_png,
)

GAP = 4  # white pixels between grid tiles, as documented in prediction_grid


def voc_colour_map(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC devkit's VOClabelcolormap.m, written out bit by bit."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


def random_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def random_mask(h: int, w: int, classes: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, classes, (h, w), generator=torch.Generator().manual_seed(seed))


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return np.array(image)


def test_palette_is_the_voc_colour_map():
    p = palette(256)
    assert p.dtype == torch.uint8 and p.shape == (256, 3)
    assert [tuple(c) for c in p.tolist()] == voc_colour_map(256)
    assert p[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert len({tuple(c) for c in p.tolist()}) == 256
    assert torch.equal(palette(21), p[:21])


@pytest.mark.parametrize("n", [0, 257])
def test_palette_rejects_sizes_outside_1_256(n):
    with pytest.raises(ValueError, match=r"\[1, 256\]"):
        palette(n)


def test_camvid_palette_is_segnet_tutorials():
    assert CAMVID_PALETTE.dtype == torch.uint8
    assert CAMVID_PALETTE.tolist() == [
        [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
        [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 0],
    ]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_colorize_is_a_table_lookup(dtype):
    mask = random_mask(5, 7, 12).to(dtype)
    out = colorize(mask, CAMVID_PALETTE)
    assert out.dtype == torch.uint8 and out.shape == (3, 5, 7)
    colours = CAMVID_PALETTE.tolist()
    for y in range(5):
        for x in range(7):
            assert out[:, y, x].tolist() == colours[int(mask[y, x])]


def test_colorize_accepts_a_list_of_colours():
    mask = random_mask(4, 4, 3)
    colours = [(1, 2, 3), (40, 50, 60), (255, 0, 7)]
    expected = np.array(colours, dtype=np.uint8)[mask.numpy()].transpose(2, 0, 1)
    assert np.array_equal(colorize(mask, colours).numpy(), expected)


def test_colorize_paints_ignored_pixels_with_ignore_colour():
    mask = random_mask(6, 6, 4)
    mask[0, :] = 255
    mask[3, 2] = 255
    out = colorize(mask, palette(4), ignore_index=255, ignore_colour=(9, 8, 7))
    ignored = mask == 255
    assert (out.permute(1, 2, 0)[ignored] == torch.tensor([9, 8, 7], dtype=torch.uint8)).all()
    expected = colorize(mask.masked_fill(ignored, 0), palette(4)).permute(1, 2, 0)
    assert torch.equal(out.permute(1, 2, 0)[~ignored], expected[~ignored])


def test_colorize_names_labels_without_a_colour():
    mask = torch.tensor([[0, 1, 7], [5, -1, 255]])
    with pytest.raises(ValueError, match=r"\[-1, 5, 7\].*\[0, 4\) or ignore_index=255"):
        colorize(mask, palette(4), ignore_index=255)
    with pytest.raises(ValueError, match=r"\[-1, 5, 7, 255\]"):
        colorize(mask, palette(4))


@pytest.mark.parametrize(
    ("mask", "colours", "error"),
    [
        (torch.zeros(2, 2), palette(2), TypeError),  # float mask
        (torch.zeros(2, 2, dtype=torch.bool), palette(2), TypeError),
        (torch.zeros(1, 2, 2, dtype=torch.long), palette(2), ValueError),  # not (H, W)
        (np.zeros((2, 2), dtype=np.int64), palette(2), TypeError),
        (torch.zeros(2, 2, dtype=torch.long), torch.rand(2, 3), TypeError),  # colours in [0, 1]
        (torch.zeros(2, 2, dtype=torch.long), [(0, 0, 0, 0)], ValueError),  # RGBA
        (torch.zeros(2, 2, dtype=torch.long), [(0, 0, 256)], ValueError),
    ],
)
def test_colorize_rejects_bad_input(mask, colours, error):
    with pytest.raises(error):
        colorize(mask, colours)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.3, 1.0])
def test_overlay_blends_by_alpha(alpha):
    image, mask = random_image(8, 9), random_mask(8, 9, 12)
    colour = CAMVID_PALETTE.numpy()[mask.numpy()].transpose(2, 0, 1).astype(np.float64)
    expected = np.rint(alpha * colour + (1 - alpha) * image.numpy().astype(np.float64)).astype(np.uint8)
    out = overlay(image, mask, CAMVID_PALETTE, alpha=alpha)
    assert out.dtype == torch.uint8
    assert np.array_equal(out.numpy(), expected)


def test_overlay_leaves_ignored_pixels_alone():
    image, mask = random_image(6, 6), random_mask(6, 6, 3)
    mask[:, 4:] = 255
    out = overlay(image, mask, palette(3), alpha=0.7, ignore_index=255)
    assert torch.equal(out[:, :, 4:], image[:, :, 4:])
    colour = palette(3).numpy()[mask[:, :4].numpy()].transpose(2, 0, 1).astype(np.float64)
    expected = np.rint(0.7 * colour + (1 - 0.7) * image[:, :, :4].numpy().astype(np.float64))
    assert np.array_equal(out[:, :, :4].numpy(), expected.astype(np.uint8))


def test_overlay_rejects_bad_input():
    image, mask = random_image(4, 4), random_mask(4, 4, 2)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        overlay(image, mask, palette(2), alpha=1.5)
    with pytest.raises(ValueError, match=r"\(3, 4, 4\).*\(4, 5\)"):
        overlay(image, random_mask(4, 5, 2), palette(2))
    with pytest.raises(TypeError, match="uint8"):
        overlay(image.float(), mask, palette(2))


def test_save_png_round_trip(tmp_path):
    image = random_image(7, 11)
    path = save_png(tmp_path / "a" / "b" / "image.png", image)  # folders are created
    assert path == tmp_path / "a" / "b" / "image.png"
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
    assert np.array_equal(read_png(path), image.permute(1, 2, 0).numpy())


def test_save_png_rejects_non_images(tmp_path):
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        save_png(tmp_path / "x.png", torch.zeros(4, 2, 2, dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []


def test_save_mask_png_round_trip(tmp_path):
    mask = random_mask(9, 10, 12)
    mask[0, 0] = 255  # an ignore label past the last colour is kept as it is
    path = save_mask_png(str(tmp_path / "mask.png"), mask, CAMVID_PALETTE)
    with Image.open(path) as png:
        assert png.mode == "P"
        colours = png.getpalette()
        indices = np.array(png)
    assert np.array_equal(indices, mask.numpy())
    assert colours[: 3 * 12] == CAMVID_PALETTE.flatten().tolist()
    assert set(colours[3 * 12 :]) <= {0}
    with Image.open(path) as png:  # the embedded palette paints the classes, 255 black
        painted = np.array(png.convert("RGB"))
    assert np.array_equal(painted, colorize(mask, CAMVID_PALETTE, ignore_index=255).permute(1, 2, 0).numpy())


@pytest.mark.parametrize("bad", [256, -1])
def test_save_mask_png_rejects_labels_a_byte_cannot_hold(tmp_path, bad):
    mask = torch.zeros(3, 3, dtype=torch.long)
    mask[1, 1] = bad
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        save_mask_png(tmp_path / "mask.png", mask, palette(3))
    assert list(tmp_path.iterdir()) == []


def test_prediction_grid_lays_out_image_target_prediction(tmp_path):
    n, h, w = 3, 5, 6
    images = torch.stack([random_image(h, w, seed) for seed in range(n)])
    targets = torch.stack([random_mask(h, w, 4, seed) for seed in range(n)])
    targets[0, 0, 0] = 255
    predictions = torch.stack([random_mask(h, w, 4, seed + 10) for seed in range(n)])
    path = prediction_grid(images, targets, predictions, palette(4), tmp_path / "grid.png", ignore_index=255)
    grid = read_png(path)
    assert grid.shape == (n * h + (n - 1) * GAP, 3 * w + 2 * GAP, 3)
    colours = palette(4).numpy()
    tiles = {
        (i, j): (slice(i * (h + GAP), i * (h + GAP) + h), slice(j * (w + GAP), j * (w + GAP) + w))
        for i in range(n)
        for j in range(3)
    }
    for i in range(n):
        target_rgb = colours[targets[i].clamp(max=3).numpy()]
        if i == 0:
            target_rgb[0, 0] = 0  # ignored: the default ignore colour, black
        assert np.array_equal(grid[tiles[i, 0]], images[i].permute(1, 2, 0).numpy())
        assert np.array_equal(grid[tiles[i, 1]], target_rgb)
        assert np.array_equal(grid[tiles[i, 2]], colours[predictions[i].numpy()])
    gaps = np.ones(grid.shape[:2], dtype=bool)
    for tile in tiles.values():
        gaps[tile] = False
    assert (grid[gaps] == 255).all()


def test_draw_prediction_grid_is_the_saved_picture_without_a_file(tmp_path):
    images = torch.stack([random_image(5, 6, seed) for seed in range(3)])
    masks = torch.stack([random_mask(5, 6, 4, seed) for seed in range(3)])
    drawn = viz.draw_prediction_grid(images, masks, masks.flip(0), palette(4), max_rows=2)
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, 2 * 5 + GAP, 3 * 6 + 2 * GAP)
    saved = read_png(prediction_grid(images, masks, masks.flip(0), palette(4), tmp_path / "g.png", max_rows=2))
    assert np.array_equal(drawn.permute(1, 2, 0).numpy(), saved)


def test_prediction_grid_draws_at_most_max_rows(tmp_path):
    images = torch.stack([random_image(4, 4, seed) for seed in range(5)])
    masks = torch.zeros(5, 4, 4, dtype=torch.long)
    grid = read_png(prediction_grid(images, masks, masks, palette(2), tmp_path / "g.png", max_rows=2))
    assert grid.shape == (2 * 4 + GAP, 3 * 4 + 2 * GAP, 3)
    assert np.array_equal(grid[4 + GAP :, :4], images[1].permute(1, 2, 0).numpy())


@pytest.mark.parametrize(
    ("images", "targets", "predictions"),
    [
        ((2, 3, 4, 4), (3, 4, 4), (3, 4, 4)),  # N differs
        ((2, 3, 4, 4), (2, 4, 5), (2, 4, 5)),  # W differs
        ((2, 3, 4, 4), (2, 4, 4), (2, 4, 3)),  # predictions differ from targets
        ((2, 3, 4, 4), (2, 4, 4), (2, 5, 4, 4)),  # logits instead of labels
        ((2, 1, 4, 4), (2, 4, 4), (2, 4, 4)),  # one channel
    ],
)
def test_prediction_grid_rejects_shapes_that_disagree(tmp_path, images, targets, predictions):
    with pytest.raises(ValueError, match=r"do not agree; expected \(N, 3, H, W\), \(N, H, W\) and \(N, H, W\)"):
        prediction_grid(
            torch.zeros(images, dtype=torch.uint8),
            torch.zeros(targets, dtype=torch.long),
            torch.zeros(predictions, dtype=torch.long),
            palette(5),
            tmp_path / "grid.png",
        )
    assert list(tmp_path.iterdir()) == []


def write_each(path):
    """One call per writer, all drawing to ``path``."""
    mask = random_mask(4, 4, 3)
    batch = (random_image(4, 4)[None], mask[None], mask[None])
    return {
        "save_png": lambda: save_png(path, random_image(4, 4)),
        "save_mask_png": lambda: save_mask_png(path, mask, palette(3)),
        "prediction_grid": lambda: prediction_grid(*batch, palette(3), path),
        "plot_confusion_matrix": lambda: plot_confusion_matrix(torch.eye(3), path),
        "plot_curves": lambda: plot_curves([{"loss": 1.0}, {"loss": 0.5}], path),
    }


WRITERS = list(write_each("unused"))


def skip_without_matplotlib(writer: str) -> None:
    if writer.startswith("plot_"):
        pytest.importorskip("matplotlib")


@pytest.mark.parametrize("writer", WRITERS)
def test_failed_replace_leaves_no_file(tmp_path, monkeypatch, writer):
    def refuse(src, dst):
        raise OSError("disk full")

    skip_without_matplotlib(writer)
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_each(tmp_path / "out" / "file.png")[writer]()
    assert list((tmp_path / "out").iterdir()) == []  # neither the target nor the temporary file


@pytest.mark.parametrize("writer", WRITERS)
def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch, writer):
    skip_without_matplotlib(writer)
    target = tmp_path / "file.png"
    target.write_bytes(b"old")

    def interrupt_after_some_bytes(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupt_after_some_bytes)
    if writer.startswith("plot_"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        monkeypatch.setattr(FigureCanvasAgg, "print_png", interrupt_after_some_bytes)
    with pytest.raises(KeyboardInterrupt):
        write_each(target)[writer]()
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("writer", WRITERS)
def test_temporary_file_sits_next_to_the_target(tmp_path, monkeypatch, writer):
    skip_without_matplotlib(writer)
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (moves.append((src, dst)), real_replace(src, dst)))
    path = write_each(tmp_path / "file.png")[writer]()
    [(src, dst)] = moves
    assert os.path.dirname(src) == str(tmp_path) and os.fspath(dst) == str(path)
    assert list(tmp_path.iterdir()) == [path]
    with Image.open(path) as png:
        assert png.format == "PNG"


def spy(monkeypatch, cls, name):
    """Record the arguments of every call to ``cls.name`` and let the call through."""
    calls = []
    real = getattr(cls, name)

    def record(self, *args, **kwargs):
        calls.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, record)
    return calls


def test_confusion_matrix_plot(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matrix = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    shown = spy(monkeypatch, matplotlib.axes.Axes, "imshow")
    texts = spy(monkeypatch, matplotlib.axes.Axes, "text")
    path = plot_confusion_matrix(matrix, tmp_path / "plots" / "cm.png", class_names=["sky", "road", "car"])
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > 100 and png.height > 100
    expected = [[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]]  # row 1 has no pixels
    assert np.array_equal(shown[0][0], np.array(expected))
    assert [t[2] for t in texts] == [f"{v:.2f}" for row in expected for v in row]


def test_confusion_matrix_plot_counts_and_large_matrices(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    texts = spy(monkeypatch, matplotlib.axes.Axes, "text")
    plot_confusion_matrix(torch.tensor([[5, 1], [0, 7]]), tmp_path / "counts.png", normalize=False)
    assert [t[2] for t in texts] == ["5", "1", "0", "7"]
    texts.clear()
    path = plot_confusion_matrix(torch.randint(0, 9, (25, 25)), tmp_path / "big.png")
    assert texts == []  # 25 classes: no numbers in the cells
    with Image.open(path) as png:
        png.verify()


def test_confusion_matrix_plot_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"square \(C, C\)"):
        plot_confusion_matrix(torch.zeros(2, 3), tmp_path / "cm.png")
    with pytest.raises(ValueError, match="2 class_names for a 3x3 matrix"):
        plot_confusion_matrix(torch.eye(3), tmp_path / "cm.png", class_names=["a", "b"])


HISTORY = [
    {"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "mean_iou": 0.2, "phase": "warm-up"},
    {"epoch": 2, "train_loss": 0.7, "mean_iou": 0.35},  # no validation this epoch
    {"epoch": 3, "train_loss": 0.5, "val_loss": 0.8, "mean_iou": 0.4},
]


def test_curves_plot(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    plotted = spy(monkeypatch, matplotlib.axes.Axes, "plot")
    titles = spy(monkeypatch, matplotlib.axes.Axes, "set_title")
    path = plot_curves(HISTORY, tmp_path / "curves.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > 100 and png.height > 100
    assert [t[0] for t in titles] == ["train_loss", "val_loss", "mean_iou"]  # not epoch, not text
    xy = [(list(x), list(y)) for x, y in plotted]
    assert xy == [([1, 2, 3], [1.0, 0.7, 0.5]), ([1, 3], [1.2, 0.8]), ([1, 2, 3], [0.2, 0.35, 0.4])]


def test_curves_plot_counts_epochs_from_one_and_honours_keys(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    plotted = spy(monkeypatch, matplotlib.axes.Axes, "plot")
    plot_curves([{"loss": 3.0}, {"loss": 2.0, "acc": 0.5}], tmp_path / "curves.png", keys=["loss"])
    assert [(list(x), list(y)) for x, y in plotted] == [([1, 2], [3.0, 2.0])]


def test_curves_plot_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="non-empty list"):
        plot_curves([], tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"\['miou'\].*\['train_loss', 'val_loss', 'mean_iou'\]"):
        plot_curves(HISTORY, tmp_path / "c.png", keys=["train_loss", "miou"])
    with pytest.raises(ValueError, match="numeric keys"):
        plot_curves([{"epoch": 1}], tmp_path / "c.png")


@pytest.mark.parametrize(
    "plot",
    [
        lambda path: plot_confusion_matrix(torch.eye(2), path),
        lambda path: plot_curves([{"loss": 1.0}], path),
    ],
    ids=["confusion_matrix", "curves"],
)
def test_plots_without_matplotlib_say_what_to_install(tmp_path, monkeypatch, plot):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "segzoo\[plots\]"'):
        plot(tmp_path / "plot.png")
    assert list(tmp_path.iterdir()) == []


def test_importing_viz_leaves_matplotlib_and_torchvision_unloaded():
    code = (
        "import sys, segzoo.viz; "
        "loaded = [m for m in ('matplotlib', 'torchvision') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_viz_is_importable_as_a_module():
    assert viz.palette is palette


def test_heatmap_interpolates_between_anchor_colours_and_clips():
    values = torch.tensor([[0.0, 1.0, 0.0625, -3.0, 7.0]])  # 0.0625 is halfway between anchors 0 and 1
    rgb = viz.heatmap(values)
    assert rgb.dtype == torch.uint8 and rgb.shape == (3, 1, 5)
    assert rgb[:, 0, 0].tolist() == [0, 0, 4]  # inferno black
    assert rgb[:, 0, 1].tolist() == [252, 255, 164]  # inferno pale yellow
    assert rgb[:, 0, 2].tolist() == [16, 6, 38]  # round((0 + 31) / 2), round((0 + 12) / 2), round((4 + 72) / 2)
    assert rgb[:, 0, 3].tolist() == [0, 0, 4] and rgb[:, 0, 4].tolist() == [252, 255, 164]
    assert torch.equal(viz.heatmap(values * 2, vmax=2.0), rgb)


def test_heatmap_brightness_rises_with_the_value():
    rgb = viz.heatmap(torch.linspace(0, 1, 101).view(1, -1)).double()
    luminance = 0.299 * rgb[0, 0] + 0.587 * rgb[1, 0] + 0.114 * rgb[2, 0]
    assert (luminance.diff() >= 0).all()


@pytest.mark.parametrize("values", [torch.zeros(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64), torch.tensor([[float("nan")]])])
def test_heatmap_rejects_bad_input(values):
    with pytest.raises(ValueError):
        viz.heatmap(values)


# ---- property tests ----

@st.composite
def masks_and_colours(draw):
    """An integer mask (H, W) (sides 0 included) and a colour table of K rows, labels sometimes >= K or < 0."""
    k = draw(st.integers(1, 6))
    ignore = draw(st.sampled_from(IGNORES))
    shape = (draw(st.integers(0, 6)), draw(st.integers(0, 6)))
    labels = st.integers(0, k - 1) | st.sampled_from([ignore] if ignore is not None else [0])
    if draw(st.booleans()):
        labels = labels | st.integers(-3, k + 3)
    mask = torch.from_numpy(draw(hnp.arrays(np.int64, shape, elements=labels))).to(draw(st.sampled_from(LABEL_DTYPES[:3])))
    colours = torch.from_numpy(draw(hnp.arrays(np.uint8, (k, 3))))
    return mask, colours, ignore


@settings(max_examples=50, **CASES)
@given(case=masks_and_colours(), image_seed=st.integers(0, 2**31), alpha=st.floats(0, 1))
@example(case=(torch.tensor([[3]], dtype=torch.int8), viz.palette(4), 259), image_seed=0, alpha=1.0)  # 259 wraps to 3
def test_colorize_and_overlay_are_lookups_and_blends_and_name_missing_colours(case, image_seed, alpha):
    mask, colours, ignore = case
    labels = mask.long().numpy()
    ignored = labels == ignore if ignore is not None else np.zeros(labels.shape, bool)
    bad = set(labels[~ignored & ((labels < 0) | (labels >= len(colours)))].tolist())
    painted = assert_works_or_clear_error(lambda: viz.colorize(mask, colours, ignore, ignore_colour=(1, 2, 3)))
    image = torch.randint(0, 256, (3, *mask.shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(image_seed))
    blended = assert_works_or_clear_error(lambda: viz.overlay(image, mask, colours, alpha, ignore))
    if bad:
        assert_names_labels(painted, bad)
        assert_names_labels(blended, bad)
        return
    table = colours.numpy()
    expected = np.where(ignored[..., None], np.array([1, 2, 3], np.uint8), table[np.where(ignored, 0, labels)])
    assert np.array_equal(painted.numpy(), expected.transpose(2, 0, 1))
    mixed = np.round(alpha * table[np.where(ignored, 0, labels)].transpose(2, 0, 1) + (1 - alpha) * image.numpy())
    expected = np.where(ignored[None], image.numpy(), mixed)
    assert np.array_equal(blended.numpy(), expected.astype(np.uint8))


INFERNO_ANCHORS = np.array(
    [
        (0, 0, 4),
        (31, 12, 72),
        (85, 15, 109),
        (136, 34, 106),
        (186, 54, 85),
        (227, 89, 51),
        (249, 140, 10),
        (249, 201, 50),
        (252, 255, 164),
    ]
)


@settings(max_examples=40, **CASES)
@given(
    values=hnp.arrays(
        st.sampled_from([np.float16, np.float32, np.float64]),
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=6),
        elements=st.floats(-10, 10, width=16) | st.sampled_from([math.nan, math.inf]),
    ),
    vmax=st.floats(0.01, 100),
)
def test_heatmap_interpolates_inferno_and_refuses_non_finite_values(values, vmax):
    result = assert_works_or_clear_error(lambda: viz.heatmap(torch.from_numpy(values), vmax))
    if not np.isfinite(values).all():
        assert_rejected(result, ValueError, "finite")
        return
    position = np.clip(values.astype(np.float64) / vmax, 0, 1) * (len(INFERNO_ANCHORS) - 1)
    expected = [np.interp(position, np.arange(len(INFERNO_ANCHORS)), INFERNO_ANCHORS[:, c]) for c in range(3)]
    assert result.dtype == torch.uint8 and result.shape == (3, *values.shape)
    # rounding of the two interpolations may differ at exact halves
    assert np.abs(result.numpy().astype(int) - np.round(expected)).max(initial=0) <= 1
