"""``channels_last`` modes: which memory format training uses where, with the CPU probe replaced;
the trainer, ``segzoo train``, the recipes and the demo honour them."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import segzoo
from segzoo.cli import _parser
from segzoo.recipes import Recipe, load_recipe, recipe_names
from segzoo.training import TrainConfig, Trainer, run
from segzoo.training.memory_format import describe_channels_last, trains_channels_last


@pytest.fixture()
def capability(monkeypatch):
    """Set the vector width torch reports: ``capability("AVX2")``."""

    def configure(name: str) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: name)

    return configure


@pytest.mark.parametrize(
    ("mode", "device", "amp_dtype", "cpu", "expected"),
    [
        (True, "cpu", None, "AVX2", True),  # asked for: kept everywhere
        (False, "cuda", torch.bfloat16, "AVX512", False),
        ("auto", "cuda", None, "AVX2", True),  # GPUs: tensor cores want NHWC
        ("auto", "cuda", torch.float16, "AVX2", True),
        ("auto", "cpu", torch.bfloat16, "AVX2", True),  # oneDNN's bf16 kernels are channels_last
        ("auto", "cpu", None, "AVX512", True),  # fp32 on AVX-512: measured faster
        ("auto", "cpu", None, "AVX512_BF16", True),
        ("auto", "cpu", None, "AVX2", False),  # fp32 on AVX2: measured slower
        ("auto", "cpu", None, "DEFAULT", False),
        ("auto", "mps", None, "DEFAULT", False),
    ],
)
def test_which_format_each_mode_trains_in(capability, mode, device, amp_dtype, cpu, expected):
    capability(cpu)
    assert trains_channels_last(mode, device, amp_dtype) is expected


@pytest.mark.parametrize("bad", ["on", "yes", 1, 0, None])
def test_anything_but_a_bool_or_auto_is_refused(bad):
    with pytest.raises(TypeError, match="channels_last must be True, False or 'auto'"):
        TrainConfig(channels_last=bad)
    with pytest.raises(TypeError, match="channels_last must be True, False or 'auto'"):
        trains_channels_last(bad, "cpu", None)


def test_describe(capability):
    capability("AVX2")
    assert describe_channels_last("auto", "cpu", None) == "auto: NCHW (float32 on a CPU without AVX-512)"
    assert describe_channels_last("auto", "cpu", torch.bfloat16) == "auto: channels_last (bfloat16 autocast)"
    assert describe_channels_last(True, "cpu", None) == "on: channels_last"
    assert describe_channels_last(False, "cuda", None) == "off: NCHW"
    capability("AVX512")
    assert describe_channels_last("auto", "cpu", None) == "auto: channels_last (float32 on a CPU with AVX-512)"
    assert describe_channels_last("auto", "cuda", None) == "auto: channels_last (on a GPU)"


def _trainer(channels_last) -> Trainer:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 16, generator=g)
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=2)
    torch.manual_seed(0)
    return Trainer(segzoo.SegNetBasic(2), loader, None, TrainConfig(epochs=1, channels_last=channels_last), progress=False)


@pytest.mark.parametrize(("cpu", "expected"), [("AVX2", False), ("AVX512", True)])
def test_the_trainer_resolves_auto_for_the_weights_and_the_batches(capability, monkeypatch, cpu, expected):
    capability(cpu)
    trainer = _trainer("auto")
    assert trainer.channels_last is expected and trainer.config.channels_last == "auto"
    weight = trainer.model.encoder.stages[0][0].conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) is expected
    assert weight.is_contiguous() is not expected
    formats: list[bool] = []
    original = trainer.model.forward
    monkeypatch.setattr(trainer.model, "forward", lambda x: formats.append(x.is_contiguous(memory_format=torch.channels_last)) or original(x))
    trainer.fit()
    assert formats == [expected, expected], "both training batches"


def test_the_trainer_logs_what_auto_chose(capability, caplog):
    capability("AVX2")
    with caplog.at_level("INFO", logger="segzoo"):
        _trainer("auto")
    assert "channels_last auto: NCHW (float32 on a CPU without AVX-512)" in caplog.text


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], "auto"), (["--channels-last"], True), (["--no-channels-last"], False), (["--channels-last", "off"], False),
     (["--channels-last", "on"], True), (["--channels-last", "auto"], "auto")],
)  # fmt: skip
def test_segzoo_train_parses_the_modes(flags, expected):
    args = _parser().parse_args(["train", "--model", "segnet_basic", "--data", "D", "--out", "O", *flags])
    assert args.channels_last == expected


def test_segzoo_train_refuses_another_mode(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["train", "--model", "segnet_basic", "--data", "D", "--out", "O", "--channels-last", "yes"])
    assert exit_info.value.code == 2
    assert "expected auto, on or off, got 'yes'" in capsys.readouterr().err


def test_recipes_take_auto_and_refuse_other_strings():
    assert Recipe("r", "d", {"channels_last": "auto"}).options["channels_last"] == "auto"
    with pytest.raises(ValueError, match="channels_last must be true, false or \"auto\", got 'on'"):
        Recipe("r", "d", {"channels_last": "on"})


def test_the_shipped_recipes_and_the_demo_leave_the_choice_to_the_hardware(monkeypatch, tmp_path):
    """Every recipe that sets channels_last says auto; the demo's run asks for auto too."""
    assert {load_recipe(name).options.get("channels_last", "auto") for name in recipe_names()} == {"auto"}
    seen: list[TrainConfig] = []

    def record(model, train_set, val_set, out_dir, config, data, **kwargs):
        seen.append(config)

    monkeypatch.setattr(run, "train", record)
    run.demo(tmp_path / "demo", epochs=1, num_images=4, progress=False)
    assert seen[0].channels_last == "auto" and seen[0].amp == "auto"

