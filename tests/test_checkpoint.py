"""Training checkpoints: atomic writes, safe reads, rebuilding a model from a file alone, and the run
description read with it (``load_run``)."""

import logging
import os
import pickle
import re

import pytest
import torch

import segzoo
from segzoo import RunDescription
from segzoo.data import DataConfig, SegmentationFolder
from segzoo.io.checkpoint import FORMAT, head_keys, load_checkpoint, load_weights, save_atomic, save_checkpoint
from segzoo.training import TrainConfig, train


# DeconvNet's checkpoint is a 1 GB file: with the slow tests
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "deconvnet" else n for n in segzoo.list_models()]
)
def test_every_model_round_trips(tmp_path, name):
    kwargs = {"num_classes": 3, "in_channels": 1}
    if name in ("fcn8s", "fcn16s", "fcn32s"):
        kwargs.update(geometry="caffe", fixed_upsampling=True, batch_norm=False)
    model = segzoo.get_model(name, **kwargs).eval()
    path = save_checkpoint(tmp_path / "model.pt", model, epoch=7)
    rebuilt = segzoo.load(path).eval()
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    x = torch.randn(1, 1, 40, 44)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert load_checkpoint(path)["epoch"] == 7


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = save_atomic({"version": 1}, tmp_path / "ckpt.pt")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"version": 2}, target)
    assert torch.load(target, weights_only=True) == {"version": 1}
    assert os.listdir(tmp_path) == ["ckpt.pt"], "the temporary file is cleaned up"


def test_not_a_segzoo_checkpoint(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a segzoo checkpoint"):
        segzoo.load(tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError):
        segzoo.load(tmp_path / "missing.pt")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint's bytes and, to find them in the file, its classifier weight's raw bytes."""
    model = segzoo.SegNetBasic(2)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model, epoch=1)
    return path.read_bytes(), model.classifier.weight.detach().numpy().tobytes()


def _damaged(path, problem):
    return pytest.raises(ValueError, match=f"^{re.escape(str(path))} is {problem}")


# 0: an empty file; 1, 3: cut inside the zip signature; -22: the end-of-archive record
@pytest.mark.parametrize("keep", [0, 1, 3, 100, 0.5, -22, -1])
def test_truncated_checkpoint(tmp_path, saved, keep):
    data = saved[0]
    path = tmp_path / "model.pt"
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with _damaged(path, "truncated or corrupted") as caught:
        segzoo.load(path)
    assert keep == 0 or caught.value.__cause__ is not None, "the error that revealed the damage is chained"


# each found by content, not by the reader's logic: a tensor's bytes (torch.load alone would load
# the flipped value silently), the pickle's text, the central directory's last name, its end record
@pytest.mark.parametrize("where", ["tensor", "pickle", "directory", "end record"])
def test_flipped_byte_is_reported(tmp_path, saved, where):
    data, classifier = saved
    offsets = {
        "tensor": data.index(classifier) + len(classifier) // 2,
        "pickle": data.index(b"state_dict"),
        "directory": data.rindex(b"data.pkl"),
        "end record": data.rindex(b"PK\x05\x06"),
    }
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    segzoo.load(path)  # intact, it loads
    damaged = bytearray(data)
    damaged[offsets[where]] ^= 0x10
    path.write_bytes(bytes(damaged))
    with _damaged(path, "truncated or corrupted") as caught:
        load_checkpoint(path)
    assert caught.value.__cause__ is not None


def test_not_a_pytorch_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("epoch: 3\nlr: 0.01\n")
    with _damaged(path, "not a PyTorch file"):
        load_checkpoint(path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_code_in_a_checkpoint_is_refused_not_run(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "x": _Payload(marker)}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(ValueError, match="contains pickled Python objects that weights_only loading refuses") as caught:
        segzoo.load(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()


def test_weights_that_do_not_fit_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(2))
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["classifier.weight"] = torch.zeros(5, 64, 1, 1)
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="classifier.weight"):
        segzoo.load(path)


def _basic(num_classes, seed, **kwargs):
    torch.manual_seed(seed)
    return segzoo.SegNetBasic(num_classes, **kwargs)


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_load_weights_same_architecture_is_an_exact_load(tmp_path):
    source = _basic(3, seed=1)
    path = save_checkpoint(tmp_path / "model.pt", source)
    model = _basic(3, seed=2)
    assert load_weights(model, path) is model
    assert _states_equal(model.state_dict(), source.state_dict())
    fresh = _basic(3, seed=2)
    load_weights(fresh, load_checkpoint(path))  # an already read checkpoint works too
    assert _states_equal(fresh.state_dict(), source.state_dict())


def test_load_weights_refuses_another_architecture():
    # a hand-made checkpoint: an FCN-8s file is half a gigabyte, and the name is refused first
    checkpoint = {"format": FORMAT, "model": {"name": "fcn8s", "config": {"num_classes": 3}}, "state_dict": {}}
    with pytest.raises(ValueError, match="fcn8s checkpoint, but the model is a segnet_basic"):
        load_weights(segzoo.SegNetBasic(3), checkpoint)


def test_load_weights_refuses_another_config(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", _basic(3, seed=1, in_channels=1, ceil_mode=False))
    model = _basic(3, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="ceil_mode: checkpoint False, model True; in_channels: checkpoint 1, model 3$"):
        load_weights(model, path, reinit_head=True)
    assert _states_equal(model.state_dict(), before)


def test_load_weights_accepts_options_that_keep_the_weight_layout(tmp_path, caplog):
    """A plain SegNet-Basic checkpoint starts a Bayesian one (dropout and pooling mode hold no weights)."""
    source = _basic(3, seed=1, ceil_mode=False)
    path = save_checkpoint(tmp_path / "model.pt", source)
    model = _basic(3, seed=2, dropout="central")
    with caplog.at_level(logging.INFO, logger="segzoo.io.checkpoint"):
        load_weights(model, path)
    assert _states_equal(model.state_dict(), source.state_dict())
    assert "dropout: checkpoint 'none', model 'central'" in caplog.text


def test_load_weights_with_another_class_count_needs_reinit_head(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", _basic(5, seed=1))
    model = _basic(3, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="has 5 classes, the model has 3; pass reinit_head=True"):
        load_weights(model, path)
    assert _states_equal(model.state_dict(), before), "nothing is loaded"


@pytest.mark.parametrize("checkpoint_classes", [5, 3])
def test_reinit_head_keeps_exactly_the_head(tmp_path, caplog, checkpoint_classes):
    source = _basic(checkpoint_classes, seed=1)
    path = save_checkpoint(tmp_path / "model.pt", source)
    model = _basic(3, seed=2)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="segzoo.io.checkpoint"):
        load_weights(model, path, reinit_head=True)
    head = {"classifier.weight", "classifier.bias"}  # SegNet-Basic's 1x1 classifier, the only per-class layer
    for key, value in model.state_dict().items():
        expected = own[key] if key in head else source.state_dict()[key]
        assert torch.equal(value, expected), key
    assert "classifier.weight, classifier.bias" in caplog.text


def test_reinit_head_is_still_all_or_nothing(tmp_path):
    source = _basic(5, seed=1)
    state = source.state_dict()
    del state["encoder.stages.0.0.conv.weight"]
    checkpoint = {"format": FORMAT, "model": {"name": "segnet_basic", "config": source.config}, "state_dict": state}
    model = _basic(3, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing \[encoder.stages.0.0.conv.weight\]"):
        load_weights(model, checkpoint, reinit_head=True)
    assert _states_equal(model.state_dict(), before)


# written out by hand from each architecture: every layer whose output channels are the classes,
# and FCN's class-to-class upsampling deconvolutions; each FCN adds a skip to the coarser one
_SEGNET_HEAD = {"classifier.weight", "classifier.bias"}
_FCN32S_HEAD = {"score_fr.weight", "score_fr.bias", "upscore.weight"}
_FCN16S_HEAD = _FCN32S_HEAD | {"score_pool4.weight", "score_pool4.bias", "upscore2.weight"}
_FCN8S_HEAD = _FCN16S_HEAD | {"score_pool3.weight", "score_pool3.bias", "upscore_pool4.weight"}
# FCN-Basic: the 1x1 reductions to the classes and the class-to-class deconvolutions; without the
# reduction its deconvolutions are 64 to 64 and only the classifier depends on the classes
_FCN_BASIC_UPSAMPLERS = {f"upsample.{i}.weight" for i in range(4)}
_FCN_BASIC_NO_ADDITION_HEAD = {"reduce.weight", "reduce.bias"} | _FCN_BASIC_UPSAMPLERS
_FCN_BASIC_SKIPS = {f"reduce_skips.{i}.{p}" for i in range(4) for p in ("weight", "bias")}
_HEADS = {
    "segnet": _SEGNET_HEAD,
    "segnet_basic": _SEGNET_HEAD,
    "segnet_basic_encoder_addition": _SEGNET_HEAD,
    "segnet_basic_single_channel_decoder": _SEGNET_HEAD,
    "bilinear_interpolation": _SEGNET_HEAD,
    "fcn_basic": _FCN_BASIC_NO_ADDITION_HEAD | _FCN_BASIC_SKIPS,
    "fcn_basic_no_addition": _FCN_BASIC_NO_ADDITION_HEAD,
    "fcn_basic_no_dim_reduction": _SEGNET_HEAD,
    "fcn_basic_no_addition_no_dim_reduction": _SEGNET_HEAD,
    "fcn32s": _FCN32S_HEAD,
    "fcn16s": _FCN16S_HEAD,
    "fcn8s": _FCN8S_HEAD,
    "deconvnet": _SEGNET_HEAD,
    "unet_vgg16": _SEGNET_HEAD,
    "deeplab_largefov": {"fc8.weight", "fc8.bias"},
}


@pytest.mark.parametrize("name", segzoo.list_models())
def test_head_keys(name):
    assert set(head_keys(name, {"num_classes": 4})) == _HEADS[name]


# ---- load_run: the model and its run description, read once ----


@pytest.mark.usefixtures("one_thread")  # tiny images: threads only spin
def test_load_run_of_a_trained_checkpoint_carries_its_run_description(folder_dataset, tmp_path):
    """``training.train`` on the tiny folder dataset, named and coloured by the dataset, resized for evaluation."""
    colours = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]

    def split(name: str) -> SegmentationFolder:
        folder = folder_dataset / name
        return SegmentationFolder(folder / "images", folder / "masks", 3, 255, class_names=["sky", "road", "car"], palette=colours)

    torch.manual_seed(0)
    data = DataConfig(batch_size=3, eval_size=(24, 32))
    result = train(segzoo.SegNetBasic(3), split("train"), split("val"), tmp_path, TrainConfig(epochs=1, lr=0.01), data, progress=False)
    model, run = segzoo.load_run(tmp_path / "last.pt")
    assert run.class_names == ("sky", "road", "car") and run.colours == tuple(colours)
    assert (run.ignore_index, run.layout, run.data) == (255, "folder", data)
    assert (run.mean, run.std) == (tuple(model.mean), tuple(model.std))
    assert run == result.run
    saved = load_checkpoint(tmp_path / "last.pt")["state_dict"]
    assert type(model) is segzoo.SegNetBasic and all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def test_load_run_without_a_saved_description_gives_the_models_defaults(tmp_path):
    """Class indices as names and the PASCAL VOC colour map (black, maroon, green)."""
    model = segzoo.SegNetBasic(3)
    loaded, run = segzoo.load_run(save_checkpoint(tmp_path / "bare.pt", model))
    assert run.class_names == ("0", "1", "2") and run.colours == ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    assert (run.ignore_index, run.layout, run.data) == (None, None, DataConfig())
    assert (run.mean, run.std) == (tuple(model.mean), tuple(model.std))
    assert type(loaded) is segzoo.SegNetBasic and loaded.config == model.config


def test_load_run_converts_a_segzoo_0_1_metadata_checkpoint(tmp_path):
    metadata = {"class_names": ["sky", "building", "pole"], "ignore_index": 11, "palette": "camvid", "eval_size": [24, 32]}
    _, run = segzoo.load_run(save_checkpoint(tmp_path / "old.pt", segzoo.SegNetBasic(3), metadata=metadata))
    assert run.class_names == ("sky", "building", "pole") and run.ignore_index == 11
    assert run.colours == ((128, 128, 128), (128, 0, 0), (192, 192, 128))  # CamVid's sky, building, pole
    assert run.data == DataConfig(eval_size=(24, 32))


def test_load_run_refuses_a_description_that_does_not_fit_the_model(tmp_path):
    two = RunDescription(class_names=("a", "b"), colours=((0, 0, 0), (1, 1, 1)), mean=(0.5,) * 3, std=(0.5,) * 3)
    path = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(3), run=two.to_dict())
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))} describes 2 classes, its model has 3$"):
        segzoo.load_run(path)
    path = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(2), run={**two.to_dict(), "palette": "voc"})
    with pytest.raises(ValueError, match=r"run description has unknown fields \['palette'\]"):
        segzoo.load_run(path)


def _wrapped_state(model, wrapping):
    """The state dict of ``model`` as its wrappers give it: DataParallel / DDP put ``module.`` before
    every key, torch.compile's OptimizedModule ``_orig_mod.`` (read from the real wrappers)."""
    for wrapper in wrapping:
        model = torch.nn.DataParallel(model) if wrapper == "parallel" else torch.compile(model)
    return model.state_dict()


WRAPPINGS = {"module.": ["parallel"], "_orig_mod.": ["compile"], "module._orig_mod.": ["compile", "parallel"],
             "_orig_mod.module.": ["parallel", "compile"]}


@pytest.mark.parametrize("prefix", list(WRAPPINGS))
def test_a_wrapped_models_state_dict_loads_on_every_path(tmp_path, prefix):
    """A checkpoint whose state dict was taken from a DDP-wrapped and/or torch.compile'd model loads
    through segzoo.load, load_run and load_weights, with exactly the unwrapped model's weights."""
    source = _basic(3, seed=1)
    state = _wrapped_state(source, WRAPPINGS[prefix])
    assert all(key.startswith(prefix) for key in state)  # the wrappers really name keys this way
    path = save_checkpoint(tmp_path / "model.pt", source)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = state
    torch.save(checkpoint, path)
    assert _states_equal(segzoo.load(path).state_dict(), source.state_dict())
    assert _states_equal(segzoo.load_run(path)[0].state_dict(), source.state_dict())
    fresh = load_weights(_basic(3, seed=2), path)
    assert _states_equal(fresh.state_dict(), source.state_dict())


def test_an_unrelated_prefix_is_refused_and_nothing_loads(tmp_path):
    source = _basic(3, seed=1)
    path = save_checkpoint(tmp_path / "model.pt", source)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = {f"backbone.{key}": value for key, value in source.state_dict().items()}
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"does not fit SegNetBasic: missing \[.*unexpected \[backbone\."):
        segzoo.load(path)
    model = _basic(3, seed=2)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"unexpected \[backbone\."):
        load_weights(model, path)
    assert _states_equal(model.state_dict(), before)
