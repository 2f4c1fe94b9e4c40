"""SegNet / SegNet-Basic structure, their forward at odd sizes against an independent pooling, and
the Bayesian SegNet dropout placements."""

import numpy as np
import pytest
import torch
from support.reference_pooling import pool, unpool
from torch import nn

from segzoo import SegNet, SegNetBasic
from segzoo.models.segnet import DROPOUT_PLACEMENTS, dropout_stages


def _reference_forward(model, x: torch.Tensor, ceil_mode: bool) -> np.ndarray:
    """The model's own conv stages, wired with the NumPy reference pooling/unpooling."""
    positions, sizes = [], []
    h = x
    for stage in model.encoder.stages:
        h = stage(h)
        sizes.append(tuple(h.shape[-2:]))
        values, where = pool(h.numpy(), ceil_mode)
        positions.append(where)
        h = torch.from_numpy(values)
    for stage, where, size in zip(model.decoder, reversed(positions), reversed(sizes)):
        h = stage(torch.from_numpy(unpool(h.numpy(), where, size)))
    return model.classifier(h).numpy()


@pytest.mark.parametrize("ceil_mode", [True, False])
@pytest.mark.parametrize("size", [(45, 61), (64, 97), (33, 32)])
def test_segnet_basic_matches_reference_at_odd_sizes(size, ceil_mode):
    """Values are unpooled to the right places at odd sizes (a wrong width puts them elsewhere)."""
    torch.manual_seed(0)
    model = SegNetBasic(4, ceil_mode=ceil_mode).double().eval()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), _reference_forward(model, x, ceil_mode), rtol=1e-10, atol=1e-10)


def test_segnet_matches_reference_at_camvid_like_odd_size():
    torch.manual_seed(0)
    model = SegNet(3).double().eval()
    x = torch.randn(1, 3, 45, 75, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), _reference_forward(model, x, True), rtol=1e-9, atol=1e-9)


def test_segnet_layers():
    """13 encoder convs with BN+ReLU; 12 decoder conv-BN-ReLU; a 3x3 classifier with no BN/ReLU."""
    model = SegNet(11)
    decoder_convs = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in decoder_convs] == [512, 512, 512, 512, 512, 256, 256, 256, 128, 128, 64, 64]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.decoder.modules()) == 12
    assert sum(isinstance(m, nn.ReLU) for m in model.decoder.modules()) == 12
    assert model.classifier.kernel_size == (3, 3) and model.classifier.out_channels == 11
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())


def test_segnet_logits_are_raw():
    """Logits may be negative: nothing clamps or normalises them after the classifier."""
    torch.manual_seed(0)
    out = SegNet(4).eval()(torch.randn(1, 3, 32, 32))
    assert (out < 0).any() and (out > 0).any()


def test_segnet_basic_layers():
    """4 + 4 convs, 7x7, 64 channels, no biases, BN everywhere, no ReLU in the decoder, 1x1 classifier."""
    model = SegNetBasic(11)
    encoder_convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    decoder_convs = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(encoder_convs) == len(decoder_convs) == 4
    for conv in encoder_convs + decoder_convs:
        assert conv.kernel_size == (7, 7) and conv.out_channels == 64 and conv.bias is None
    assert not any(isinstance(m, nn.ReLU) for m in model.decoder.modules())
    assert sum(isinstance(m, nn.ReLU) for m in model.encoder.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    assert model.classifier.kernel_size == (1, 1)


@pytest.mark.parametrize(("ceil_mode", "pool5_input"), [(True, (23, 30)), (False, (22, 30))])
def test_ceil_mode_gives_the_caffe_pool5_size(ceil_mode, pool5_input):
    """At 360x480, pool5 sees 23x30 with the Caffe SegNet's ceil-mode pooling (22x30 with floor)."""
    encoder = SegNet(2, ceil_mode=ceil_mode).encoder.eval()
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, 360, 480))[3].shape[-2:] == pool5_input


@pytest.mark.parametrize("ceil_mode", [True, False])
def test_compact_and_native_unpooling_give_bitwise_equal_outputs_and_gradients(ceil_mode):
    torch.manual_seed(0)
    compact = SegNetBasic(3, ceil_mode=ceil_mode)
    native = SegNetBasic(3, ceil_mode=ceil_mode, unpooling="native")
    native.load_state_dict(compact.state_dict())
    x = torch.randn(2, 3, 37, 51)
    outputs = []
    for model in (compact, native):
        model.zero_grad()
        out = model.train()(x)
        out.square().mean().backward()
        outputs.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(outputs[0][0], outputs[1][0])
    for a, b in zip(outputs[0][1], outputs[1][1]):
        assert torch.equal(a, b)
    assert compact.config["unpooling"] == "compact" and native.config["unpooling"] == "native"


def test_unknown_unpooling_mode_is_refused():
    with pytest.raises(ValueError, match="unpooling must be one of"):
        SegNet(3, unpooling="int64")


# ---- Bayesian SegNet: dropout placements ----


def _dropout_sites(model) -> tuple[list[int], list[int]]:
    """Encoder stages and mirrored encoder stages (for decoder sites) that are followed by dropout."""
    n = len(model.encoder.stages)
    encoder = [i for i, m in enumerate(model.encoder_dropout) if isinstance(m, nn.Dropout)]
    decoder = sorted(n - 1 - d for d, m in enumerate(model.decoder_dropout) if isinstance(m, nn.Dropout))
    return encoder, decoder


def test_bayesian_segnet_basic_drops_after_pool3_pool4_and_decoders_4_3():
    model = SegNetBasic(11, dropout="central")
    # 0-based encoder stages 2, 3 are pool3, pool4; the decoder sites mirror them (decoders 4 and 3)
    assert _dropout_sites(model) == ([2, 3], [2, 3])
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5] * 4
    # decoders 4 and 3 are the first two decoder stages to run
    assert [isinstance(m, nn.Dropout) for m in model.decoder_dropout] == [True, True, False, False]


def test_bayesian_segnet_drops_in_the_central_six_stages():
    model = SegNet(11, dropout="central", dropout_rate=0.3)
    assert _dropout_sites(model) == ([2, 3, 4], [2, 3, 4])
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.3}


@pytest.mark.parametrize("placement", DROPOUT_PLACEMENTS)
def test_every_placement_builds_runs_and_is_in_the_config(placement):
    model = SegNetBasic(3, dropout=placement)
    encoder, decoder = dropout_stages(placement, 4)
    assert _dropout_sites(model) == (sorted(encoder), sorted(decoder))
    assert model.config["dropout"] == placement
    assert model(torch.randn(2, 3, 19, 23)).shape == (2, 3, 19, 23)


def test_default_has_no_dropout_and_checkpoints_are_interchangeable():
    plain, bayesian = SegNetBasic(3), SegNetBasic(3, dropout="central")
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    bayesian.load_state_dict(plain.state_dict())  # strict: same keys, dropout has no weights
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), bayesian.eval()(x), rtol=0, atol=0)


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = SegNetBasic(3, dropout="central")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        assert torch.equal(model.eval()(x), model(x))


def test_bad_placement_and_rate_are_refused():
    with pytest.raises(ValueError, match="dropout must be one of"):
        SegNetBasic(3, dropout="middle")
    with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\)"):
        SegNet(3, dropout="central", dropout_rate=1.0)
