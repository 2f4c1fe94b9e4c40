"""fuse_for_inference: BatchNorm folded away, outputs equal to the unfused model's, the original untouched."""

import copy

import pytest
import torch
from support.random_batch_norms import randomise_batch_norms
from torch import nn

import segzoo
from segzoo.inference.fuse import fuse_for_inference

# DeconvNet (1 GB of weights, copied twice here) with the slow tests
MODELS = [pytest.param(name, marks=pytest.mark.slow) if name == "deconvnet" else name for name in segzoo.list_models()]

def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_fused_model_equals_the_original_without_batch_norm(model_cache, name):
    model = randomise_batch_norms(copy.deepcopy(model_cache(name))).train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    fused = fuse_for_inference(model)

    # the original: same mode, same tensors
    assert model.training
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)

    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert not any(m.training for m in fused.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    # each BN's weight and bias go; a conv that had no bias (SegNet-Basic) gains one
    blocks = [m for m in model.modules() if isinstance(m, segzoo.ConvBNReLU) and hasattr(m, "bn")]
    assert len(blocks) == len(batch_norms)
    gained = sum(block.conv.out_channels for block in blocks if block.conv.bias is None)
    assert _count(fused) == _count(model) - sum(2 * bn.num_features for bn in batch_norms) + gained

    x = torch.randn(2, 3, 37, 45, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=0)
        # the statistics matter: skipping every BN changes the output far beyond the tolerance
        handles = [bn.register_forward_hook(lambda module, inputs, output: inputs[0]) for bn in batch_norms]
        try:
            without_batch_norm = model(x)
        finally:
            for handle in handles:
                handle.remove()
    assert (without_batch_norm - expected).abs().max() > 1e-2


def test_any_conv_batch_norm_pair_in_a_sequential_is_folded():
    """Plain and transposed convs outside ConvBNReLU; a BN without a conv before it stays."""
    model = nn.Sequential(
        nn.BatchNorm2d(3),
        nn.Conv2d(3, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.ConvTranspose2d(4, 5, 2, 2),
        nn.BatchNorm2d(5),
        nn.ReLU(),
    )
    randomise_batch_norms(model)
    fused = fuse_for_inference(model, channels_last=False)
    assert [type(m).__name__ for m in fused] == ["BatchNorm2d", "Conv2d", "Identity", "ConvTranspose2d", "Identity", "ReLU"]
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model.eval()(x), atol=1e-5, rtol=0)


def test_channels_last_is_the_cpu_default_and_can_be_turned_off():
    model = segzoo.SegNetBasic(num_classes=3)
    x = torch.randn(1, 3, 21, 30)
    default, plain = fuse_for_inference(model), fuse_for_inference(model, channels_last=False)
    # a 7x7 conv: for 1x1 kernels the two layouts coincide
    weight, plain_weight = default.encoder.stages[0][0].conv.weight, plain.encoder.stages[0][0].conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert plain_weight.is_contiguous() and plain(x).is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(default(x), plain(x), atol=1e-5, rtol=0)


def _unpool_calls(monkeypatch) -> list[int]:
    """Counts the calls of the native unpooling (``F.max_unpool2d``, int64 indices)."""
    calls, native = [], torch.nn.functional.max_unpool2d
    monkeypatch.setattr(torch.nn.functional, "max_unpool2d", lambda *a, **k: calls.append(1) or native(*a, **k))
    return calls


@pytest.mark.parametrize("name", ["segnet_basic", "segnet_basic_encoder_addition"])
def test_the_fused_copy_unpools_natively_with_the_compact_outputs_bit_for_bit(monkeypatch, name):
    model = randomise_batch_norms(segzoo.get_model(name, num_classes=5))
    assert model.unpooling == "compact"
    calls = _unpool_calls(monkeypatch)
    fused, compact = fuse_for_inference(model), fuse_for_inference(model, unpooling="compact")
    assert (fused.unpooling, compact.unpooling, model.unpooling) == ("native", "compact", "compact")
    x = torch.randn(2, 3, 29, 38, generator=torch.Generator().manual_seed(2))  # odd pooled sizes on the way down
    with torch.no_grad():
        expected = compact(x)
        assert not calls
        assert torch.equal(fused(x), expected)
    assert len(calls) == 4  # one per decoder stage


def test_the_fused_copy_keeps_compact_unpooling_under_deterministic_algorithms(monkeypatch):
    """torch has no deterministic max_unpool2d: the native copy would raise at its first call."""
    model = segzoo.SegNetBasic(num_classes=3)
    calls = _unpool_calls(monkeypatch)
    enabled = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        fused = fuse_for_inference(model)
        assert fused.unpooling == "compact"
        with torch.no_grad():
            fused(torch.randn(1, 3, 16, 16))
        with pytest.raises(RuntimeError, match="deterministic"):
            fuse_for_inference(model, unpooling="native")(torch.randn(1, 3, 16, 16))
    finally:
        torch.use_deterministic_algorithms(enabled)
    assert len(calls) == 1  # only the copy asked for native unpooled natively (and raised)


def test_unpooling_is_checked_and_ignored_by_models_without_it():
    with pytest.raises(ValueError, match="'native', 'compact' or None"):
        fuse_for_inference(segzoo.SegNetBasic(num_classes=3), unpooling="fast")
    fused = fuse_for_inference(segzoo.FCN32s(num_classes=3), unpooling="native")
    assert not hasattr(fused, "unpooling")
