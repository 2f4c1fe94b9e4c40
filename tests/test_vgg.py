"""VGG16 stage description, VGGEncoder, torchvision key map and checkpoint conversion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.tv_layout import VGG16_CFG, assert_encoder_matches, conv_bn_indices, meta_model, random_state_dict
from torch import nn

from segzoo.models.vgg import VGG16, VGGEncoder, from_torchvision, torchvision_key_map

torch.set_num_threads(2)

# torchvision's features indices of conv1_1 .. conv5_3, frozen by hand
TV_CONV_INDICES = {
    False: [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
    True: [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40],
}
CONV_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
BN = pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "plain"])


def our_conv_names() -> list[str]:
    """Encoder key prefixes of conv1_1 .. conv5_3 in this package's layout."""
    return [f"stages.{s}.{c}" for s, widths in enumerate(VGG16) for c in range(len(widths))]


def encoder_from(converted: dict[str, torch.Tensor], batch_norm: bool, stages=VGG16) -> VGGEncoder:
    """A fresh VGGEncoder loaded (strictly) with the ``encoder.*`` part of a converted state dict."""
    encoder = VGGEncoder(batch_norm=batch_norm, stages=stages)
    prefix = "encoder."
    encoder.load_state_dict({k[len(prefix) :]: v for k, v in converted.items() if k.startswith(prefix)}, strict=True)
    return encoder


@pytest.fixture(scope="module", params=[True, False], ids=["bn", "plain"])
def full_checkpoint(request):
    """(batch_norm, a full random torchvision vgg16[_bn] state dict including the classifier)."""
    return request.param, random_state_dict(request.param, seed=1 if request.param else 2)


# --- the independent layout itself -------------------------------------------------------------


@BN
def test_hand_made_layout_matches_torchvision(batch_norm):
    """The hand-made torchvision layout has exactly torchvision's vgg16[_bn] keys, order and shapes."""
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"):
        reference = (tv.models.vgg16_bn if batch_norm else tv.models.vgg16)(weights=None).state_dict()
    ours = meta_model(VGG16_CFG, batch_norm).state_dict()
    assert list(ours) == list(reference)
    assert [v.shape for v in ours.values()] == [v.shape for v in reference.values()]
    assert [v.dtype for v in ours.values()] == [v.dtype for v in reference.values()]


@BN
def test_hand_made_layout_conv_indices_are_the_frozen_ones(batch_norm):
    """The conv positions read off the hand-made layout agree with the frozen index lists."""
    indices = conv_bn_indices(VGG16_CFG, batch_norm)
    assert [c for c, _ in indices] == TV_CONV_INDICES[batch_norm]
    assert [b for _, b in indices] == ([c + 1 for c in TV_CONV_INDICES[True]] if batch_norm else [None] * 13)


# --- torchvision_key_map ------------------------------------------------------------------------


@BN
def test_key_map_frozen_conv_and_bn_indices(batch_norm):
    """conv1_1..conv5_3 map to torchvision's exact features indices, BN to the index right after."""
    mapping = torchvision_key_map(VGG16, batch_norm)
    for ours, index in zip(our_conv_names(), TV_CONV_INDICES[batch_norm], strict=True):
        for p in ("weight", "bias"):
            assert mapping[f"{ours}.conv.{p}"] == f"features.{index}.{p}"
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if batch_norm:
                assert mapping[f"{ours}.bn.{p}"] == f"features.{index + 1}.{p}"
            else:
                assert f"{ours}.bn.{p}" not in mapping


@BN
def test_key_map_covers_encoder_and_torchvision_features_exactly(batch_norm):
    """The map's keys are exactly VGGEncoder's state dict keys, its values exactly torchvision's features keys."""
    mapping = torchvision_key_map(VGG16, batch_norm)
    assert set(mapping) == set(VGGEncoder(batch_norm=batch_norm).state_dict())
    features = meta_model(VGG16_CFG, batch_norm, classifier=False).state_dict()
    assert set(mapping.values()) == {k for k in features if k.startswith("features.")}
    assert len(set(mapping.values())) == len(mapping)


@pytest.mark.parametrize(
    "stages, cfg",
    [(((8,), (16, 16)), [8, "M", 16, 16, "M"]), (((4, 4, 4), (8,), (8, 8)), [4, 4, 4, "M", 8, "M", 8, 8, "M"])],
    ids=["1-2", "3-1-2"],
)
@BN
def test_key_map_follows_other_stage_descriptions(stages, cfg, batch_norm):
    """For a non-VGG16 description the map still points at the conv/BN positions of the matching flat layout."""
    mapping = torchvision_key_map(stages, batch_norm)
    names = [f"stages.{s}.{c}" for s, widths in enumerate(stages) for c in range(len(widths))]
    for ours, (ci, bi) in zip(names, conv_bn_indices(cfg, batch_norm), strict=True):
        assert mapping[f"{ours}.conv.weight"] == f"features.{ci}.weight"
        if batch_norm:
            assert mapping[f"{ours}.bn.running_var"] == f"features.{bi}.running_var"


# --- VGGEncoder -----------------------------------------------------------------------------------


@BN
def test_encoder_convs_in_definition_order_are_conv1_1_to_conv5_3(batch_norm):
    """The encoder's Conv2d modules, in definition order, have conv1_1..conv5_3's widths, 3x3 kernels, padding 1."""
    convs = [m for m in VGGEncoder(batch_norm=batch_norm).modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == list(zip([3, *CONV_WIDTHS[:-1]], CONV_WIDTHS))
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is not None for c in convs)
    bns = [m for m in VGGEncoder(batch_norm=batch_norm).modules() if isinstance(m, nn.BatchNorm2d)]
    assert [b.num_features for b in bns] == (CONV_WIDTHS if batch_norm else [])


@pytest.mark.parametrize(
    "size, expected",
    [
        ((360, 480), [(180, 240), (90, 120), (45, 60), (23, 30), (12, 15)]),
        ((33, 17), [(17, 9), (9, 5), (5, 3), (3, 2), (2, 1)]),
        ((1, 1), [(1, 1)] * 5),
    ],
    ids=["360x480", "33x17", "1x1"],
)
def test_encoder_forward_returns_five_ceil_mode_pools(size, expected):
    """forward returns pool1..pool5 with 64/128/256/512/512 channels and ceil-mode sizes."""
    torch.manual_seed(0)
    encoder = VGGEncoder(batch_norm=True).eval()
    with torch.no_grad():
        pooled = encoder(torch.randn(1, 3, *size))
    assert len(pooled) == 5
    assert [p.shape[1] for p in pooled] == [64, 128, 256, 512, 512]
    assert [tuple(p.shape[-2:]) for p in pooled] == expected
    assert encoder.out_channels == [64, 128, 256, 512, 512]


# --- from_torchvision ---------------------------------------------------------------------------


def test_from_torchvision_lands_every_tensor(full_checkpoint):
    """Every conv weight/bias and BN weight/bias/running stat lands on the right encoder module; classifier dropped."""
    batch_norm, state = full_checkpoint
    converted = from_torchvision(state, batch_norm, with_fc=False)
    assert set(converted) == {f"encoder.{k}" for k in VGGEncoder(batch_norm=batch_norm).state_dict()}
    assert_encoder_matches(encoder_from(converted, batch_norm), state, batch_norm)


def test_from_torchvision_with_fc_reshapes_classifier(full_checkpoint):
    """with_fc gives fc6/fc7 as the classifier weights reshaped to 4096x512x7x7 / 4096x4096x1x1, plus biases."""
    batch_norm, state = full_checkpoint
    converted = from_torchvision(state, batch_norm, with_fc=True)
    fc_keys = {k for k in converted if not k.startswith("encoder.")}
    assert fc_keys == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    assert torch.equal(converted["fc6.weight"], state["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(converted["fc7.weight"], state["classifier.3.weight"].reshape(4096, 4096, 1, 1))
    assert torch.equal(converted["fc6.bias"], state["classifier.0.bias"])
    assert torch.equal(converted["fc7.bias"], state["classifier.3.bias"])
    assert_encoder_matches(encoder_from(converted, batch_norm), state, batch_norm)


def test_fc6_as_conv_computes_the_same_as_the_linear_layer(full_checkpoint):
    """On a 512x7x7 map, conv2d with fc6 equals torchvision's Linear(classifier.0) on the flattened map."""
    batch_norm, state = full_checkpoint
    converted = from_torchvision(state, batch_norm, with_fc=True)
    x = torch.randn(1, 512, 7, 7, generator=torch.Generator().manual_seed(3))
    linear = F.linear(x.flatten(1), state["classifier.0.weight"], state["classifier.0.bias"]).flatten()
    conv = F.conv2d(x, converted["fc6.weight"], converted["fc6.bias"]).flatten()
    torch.testing.assert_close(conv, linear, rtol=1e-4, atol=5e-2)
    h = torch.randn(1, 4096, generator=torch.Generator().manual_seed(4))
    linear7 = F.linear(h, state["classifier.3.weight"], state["classifier.3.bias"]).flatten()
    conv7 = F.conv2d(h.reshape(1, 4096, 1, 1), converted["fc7.weight"], converted["fc7.bias"]).flatten()
    torch.testing.assert_close(conv7, linear7, rtol=1e-4, atol=5e-2)


@BN
def test_from_torchvision_small_stage_description(batch_norm):
    """Conversion follows the stage description: a small 1-2 conv network lands exactly too."""
    stages, cfg = ((8,), (16, 16)), [8, "M", 16, 16, "M"]
    state = random_state_dict(batch_norm, seed=5, cfg=cfg, classifier=False)
    converted = from_torchvision(state, batch_norm, with_fc=False, stages=stages)
    assert_encoder_matches(encoder_from(converted, batch_norm, stages), state, batch_norm, cfg)


def test_from_torchvision_allows_missing_num_batches_tracked():
    """A vgg16_bn checkpoint without num_batches_tracked (as published) converts, omitting those keys."""
    state = random_state_dict(True, seed=6, classifier=False, num_batches_tracked=False)
    converted = from_torchvision(state, batch_norm=True, with_fc=False)
    assert not any(k.endswith("num_batches_tracked") for k in converted)
    assert len(converted) == 13 * 6
    encoder = VGGEncoder(batch_norm=True)
    encoder.load_state_dict({k[len("encoder.") :]: v for k, v in converted.items()}, strict=False)
    assert_encoder_matches(encoder, state, True)


@pytest.mark.parametrize("checkpoint_bn", [True, False], ids=["bn-ckpt", "plain-ckpt"])
def test_from_torchvision_rejects_the_other_flavour(checkpoint_bn):
    """A vgg16_bn checkpoint with batch_norm=False, or a vgg16 one with batch_norm=True, is a ValueError."""
    state = random_state_dict(checkpoint_bn, seed=7, classifier=False)
    with pytest.raises(ValueError, match="layout"):
        from_torchvision(state, batch_norm=not checkpoint_bn, with_fc=False)


@pytest.mark.parametrize("key", ["features.41.running_var", "features.0.weight", "features.40.bias"])
def test_from_torchvision_missing_key_is_named(key):
    """A checkpoint lacking one tensor is a ValueError naming that key."""
    state = random_state_dict(True, seed=8, classifier=False)
    del state[key]
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        from_torchvision(state, batch_norm=True, with_fc=False)


@pytest.mark.parametrize("key", ["features.44.weight", "fc.weight", "module.features.0.weight"])
def test_from_torchvision_unexpected_key_is_named(key):
    """An extra key that is not one of torchvision's classifier keys is a ValueError naming it."""
    state = random_state_dict(False, seed=9, classifier=False)
    state[key] = torch.zeros(3)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        from_torchvision(state, batch_norm=False, with_fc=False)


def test_from_torchvision_with_fc_needs_the_classifier():
    """with_fc on a features-only checkpoint is a ValueError naming classifier.0.weight."""
    state = random_state_dict(False, seed=10, classifier=False)
    assert from_torchvision(state, batch_norm=False, with_fc=False)  # fine without fc
    with pytest.raises(ValueError, match=r"classifier\.0\.weight"):
        from_torchvision(state, batch_norm=False, with_fc=True)


def test_from_torchvision_wrong_classifier_size_with_fc():
    """A classifier.0 that cannot become fc6 (4096x512x7x7) is a ValueError naming it when with_fc."""
    state = random_state_dict(False, seed=11, classifier=False)
    state.update(
        {
            "classifier.0.weight": torch.zeros(4096, 512),  # e.g. a 1x1-pooled variant
            "classifier.0.bias": torch.zeros(4096),
            "classifier.3.weight": torch.zeros(4096, 4096),
            "classifier.3.bias": torch.zeros(4096),
            "classifier.6.weight": torch.zeros(1000, 4096),
            "classifier.6.bias": torch.zeros(1000),
        }
    )
    assert "fc6.weight" not in from_torchvision(state, batch_norm=False, with_fc=False)  # ignored without fc
    with pytest.raises(ValueError, match=r"classifier\.0"):
        from_torchvision(state, batch_norm=False, with_fc=True)
