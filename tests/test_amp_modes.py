"""``amp`` modes: which autocast dtype each means where, with the hardware probes replaced."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import segzoo
from segzoo.training import TrainConfig, Trainer, precision
from segzoo.training.precision import autocast_dtype, cpu_has_native_bf16, describe_amp


@pytest.fixture()
def cpu(monkeypatch):
    """Set what the CPU can do: ``cpu(torch_probe=..., flags=...)``."""

    def configure(torch_probe: bool = False, flags: str = "fpu sse avx2") -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: torch_probe, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags.split()))

    return configure


@pytest.fixture()
def gpu(monkeypatch):
    def configure(bf16: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)

    return configure


@pytest.mark.parametrize(
    ("probe", "flags", "native"),
    [
        (True, "avx2", True),  # torch's own AVX512-BF16 probe
        (False, "avx512f avx512_bf16", True),  # Zen 4, Cooper Lake and later
        (False, "amx_tile amx_bf16", True),  # Sapphire Rapids
        (False, "fp asimd bf16 i8mm", True),  # Arm v8.6 (Neoverse V1, Graviton3)
        (False, "avx512f avx512bw avx512_vnni", False),  # Cascade Lake: AVX-512 without bf16
        (False, "", False),
    ],
)
def test_native_bf16_detection(cpu, probe, flags, native):
    cpu(torch_probe=probe, flags=flags)
    assert cpu_has_native_bf16() is native


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 sse\n\nprocessor\t: 1\nflags\t\t: fpu avx512_bf16 sse\n")
    monkeypatch.setattr(precision, "_CPUINFO", info)
    assert precision.cpu_flags() == {"fpu", "avx512_bf16", "sse"}
    monkeypatch.setattr(precision, "_CPUINFO", tmp_path / "missing")
    assert precision.cpu_flags() == frozenset()


@pytest.mark.parametrize(
    ("mode", "native", "expected"),
    [
        ("off", True, None),
        (False, True, None),
        ("on", False, torch.bfloat16),  # as before the modes: bf16 on the CPU, native or not
        (True, False, torch.bfloat16),
        ("auto", True, torch.bfloat16),
        ("auto", False, None),  # emulated bf16 is slower than float32
        ("bf16", False, torch.bfloat16),
    ],
)
def test_cpu_modes(cpu, mode, native, expected):
    cpu(flags="avx512_bf16" if native else "avx2")
    assert autocast_dtype(mode, "cpu") == expected


@pytest.mark.parametrize(
    ("mode", "bf16", "expected"),
    [
        ("on", True, torch.float16),  # as before: fp16 with gradient scaling on CUDA
        ("auto", True, torch.bfloat16),
        ("auto", False, torch.float16),
        ("bf16", True, torch.bfloat16),
        ("fp16", True, torch.float16),
        ("off", True, None),
    ],
)
def test_cuda_modes(gpu, mode, bf16, expected):
    gpu(bf16)
    assert autocast_dtype(mode, "cuda:0") == expected


def test_impossible_modes_are_refused(gpu):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_dtype("fp16", "cpu")
    gpu(False)
    with pytest.raises(ValueError, match="no bfloat16"):
        autocast_dtype("bf16", "cuda")
    with pytest.raises(ValueError, match="amp must be one of"):
        TrainConfig(amp="fp8")


def test_config_keeps_bools_working():
    assert TrainConfig(amp=True).amp == "on" and TrainConfig(amp=False).amp == "off" and TrainConfig().amp == "off"


def test_describe(cpu):
    cpu(flags="avx512_bf16")
    assert describe_amp("auto", "cpu") == "auto: bfloat16 autocast on cpu"
    cpu(flags="")
    assert describe_amp("auto", "cpu") == "auto: float32 on cpu"


def _toy_trainer(**config) -> Trainer:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 16, 16, generator=g)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    torch.manual_seed(0)
    return Trainer(segzoo.SegNetBasic(2), loader, loader, TrainConfig(epochs=1, lr=1e-2, **config), progress=False)


def test_trainer_autocasts_with_the_resolved_dtype(cpu, monkeypatch):
    seen: list[torch.dtype] = []
    cpu(flags="avx512_bf16")
    trainer = _toy_trainer(amp="auto")
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    original = trainer.model.forward
    monkeypatch.setattr(trainer.model, "forward", lambda x: seen.append(original(x).dtype) or original(x))
    history = trainer.fit()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen), "training and validation in bf16"
    assert history[0]["train_loss"] == history[0]["train_loss"]  # finite
    cpu(flags="")
    assert _toy_trainer(amp="auto").amp_dtype is None


def test_channels_last_training_feeds_channels_last_batches(monkeypatch):
    """Weights and training batches in channels_last; the losses are those of NCHW training up to
    rounding (weights drift apart: rounding moves max-pooling choices at near-ties)."""
    plain, last = _toy_trainer(), _toy_trainer(channels_last=True)
    assert last.model.encoder.stages[0][0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    formats: list[bool] = []
    original = last.model.forward
    monkeypatch.setattr(last.model, "forward", lambda x: formats.append(x.is_contiguous(memory_format=torch.channels_last)) or original(x))
    expected, got = plain.fit()[0], last.fit()[0]
    assert formats[:2] == [True, True], "both training batches"
    assert got["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-4)
