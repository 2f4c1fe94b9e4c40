"""ImageNet backbone weights: every accepted form of weights_backbone, the offline hub cache, errors.

Nothing is downloaded: checkpoints are hand-made in torchvision's layout (tests/tv_layout.py),
the hub cache lives under tmp_path, and both torch.hub.download_url_to_file and socket connections
fail the test unless a test replaces them on purpose.
"""

from __future__ import annotations

import inspect
import shutil
import socket
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from support.tv_layout import (
    VGG16_BN_FILE,
    VGG16_FILE,
    assert_encoder_matches,
    conv_bn_indices,
    conv_bn_modules,
    file_name,
    meta_model,
    random_state_dict,
)
from torch import nn

from segzoo import FCN8s, SegNet
from segzoo.models.vgg import VGGEncoder
from segzoo.models.weights import WeightsEntry, adapt_first_conv, backbone_entry, load_vgg_backbone, resolve_backbone_weights

torch.set_num_threads(2)

REAL_DOWNLOAD = torch.hub.download_url_to_file
URLS = {
    True: "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
    False: "https://download.pytorch.org/models/vgg16-397923af.pth",
}
BN = pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "plain"])


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Every test: an empty TORCH_HOME, no socket connections, and any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))

    def refuse_connect(*args, **kwargs):
        pytest.fail("a socket connection was attempted")

    def refuse_download(*args, **kwargs):
        pytest.fail(f"torch.hub.download_url_to_file was called: {args} {kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_download)


@pytest.fixture(scope="module", params=[True, False], ids=["bn", "plain"])
def checkpoint(request):
    """(batch_norm, a full random torchvision vgg16[_bn] state dict, classifier included)."""
    return request.param, random_state_dict(request.param, seed=21 if request.param else 22)


@pytest.fixture(scope="module")
def fcn(checkpoint):
    """FCN8s built with the in-memory checkpoint as weights_backbone (one per flavour: FCN is large)."""
    batch_norm, state = checkpoint
    return FCN8s(21, batch_norm=batch_norm, weights_backbone=state)


def as_published(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint as torchvision publishes it: without num_batches_tracked."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def hub_home(checkpoint, tmp_path_factory):
    """A TORCH_HOME whose hub cache holds the checkpoint as published, under torchvision's file name."""
    batch_norm, state = checkpoint
    home = tmp_path_factory.mktemp("torch_home")
    path = home / "hub" / "checkpoints" / file_name(batch_norm)
    path.parent.mkdir(parents=True)
    torch.save(as_published(state), path)
    yield home
    shutil.rmtree(home)  # about 530 MB per flavour: do not keep it until the run ends


@pytest.fixture(scope="module")
def features_bn():
    """A small (features only) random vgg16_bn checkpoint."""
    return random_state_dict(True, seed=23, classifier=False)


# --- landing: SegNet and FCN8s ----------------------------------------------------------------


def test_fcn8s_lands_encoder_fc6_fc7(checkpoint, fcn):
    """FCN8s(weights_backbone=state dict) holds every conv/BN tensor and fc6/fc7 = the reshaped classifier."""
    batch_norm, state = checkpoint
    assert_encoder_matches(fcn.encoder, state, batch_norm)
    assert torch.equal(fcn.fc6.weight, state["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(fcn.fc6.bias, state["classifier.0.bias"])
    assert torch.equal(fcn.fc7.weight, state["classifier.3.weight"].reshape(4096, 4096, 1, 1))
    assert torch.equal(fcn.fc7.bias, state["classifier.3.bias"])


def test_fcn8s_loaded_weights_are_copies(checkpoint, fcn):
    """The model owns its tensors: they do not share storage with the caller's checkpoint."""
    _, state = checkpoint
    assert fcn.fc6.weight.data_ptr() != state["classifier.0.weight"].data_ptr()
    assert fcn.encoder.stages[0][0].conv.weight.data_ptr() != state["features.0.weight"].data_ptr()


def test_segnet_lands_encoder(checkpoint):
    """SegNet(weights_backbone=state dict) holds every conv/BN tensor, running stats included."""
    batch_norm, state = checkpoint
    keys = list(state)
    model = SegNet(num_classes=11, batch_norm=batch_norm, weights_backbone=state)
    assert_encoder_matches(model.encoder, state, batch_norm)
    assert list(state) == keys  # the caller's dict is not modified


# --- names and the hub cache --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["DEFAULT", "IMAGENET1K_V1"])
def test_named_weights_load_offline_from_cache(name, checkpoint, hub_home, monkeypatch):
    """A name loads the published file from $TORCH_HOME/hub/checkpoints without any download."""
    batch_norm, state = checkpoint
    monkeypatch.setenv("TORCH_HOME", str(hub_home))
    model = SegNet(num_classes=11, batch_norm=batch_norm, weights_backbone=name)
    assert_encoder_matches(model.encoder, as_published(state), batch_norm)


@BN
def test_missing_cache_file_without_network(batch_norm, tmp_path, monkeypatch):
    """No cached file and no network: one hash-checked download attempt, then a RuntimeError naming file and path."""
    calls = []

    def no_network(*args, **kwargs):
        calls.append(inspect.signature(REAL_DOWNLOAD).bind(*args, **kwargs).arguments)
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    name = file_name(batch_norm)
    expected_path = tmp_path / "home" / "hub" / "checkpoints" / name
    timeout_before = socket.getdefaulttimeout()
    with pytest.raises(RuntimeError) as info:
        SegNet(num_classes=11, batch_norm=batch_norm, weights_backbone="DEFAULT")
    message = str(info.value)
    assert name in message
    assert str(expected_path) in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert len(calls) == 1
    assert calls[0]["url"] == URLS[batch_norm]
    assert Path(calls[0]["dst"]) == expected_path
    assert calls[0]["hash_prefix"] == name.rsplit("-", 1)[1].removesuffix(".pth")
    assert socket.getdefaulttimeout() == timeout_before


def test_corrupt_cache_file_is_reported_not_redownloaded(features_bn, tmp_path, monkeypatch):
    """A truncated file in the cache is a ValueError naming its path; no download is attempted."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / VGG16_BN_FILE
    path.parent.mkdir(parents=True)
    torch.save(features_bn, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=VGG16_BN_FILE):
        SegNet(num_classes=11, weights_backbone="DEFAULT")


def test_missing_cache_file_download_gets_hash_prefix_6c64b313(tmp_path, monkeypatch):
    """The download of vgg16_bn asks torch.hub to check hash prefix 6c64b313."""
    seen = {}

    def capture(url, dst, hash_prefix=None, progress=True):
        seen.update(url=url, hash_prefix=hash_prefix)
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", capture)
    with pytest.raises(RuntimeError, match=VGG16_BN_FILE):
        resolve_backbone_weights("IMAGENET1K_V1", batch_norm=True, progress=False)
    assert seen == {"url": URLS[True], "hash_prefix": "6c64b313"}


# --- torchvision weights enum members -------------------------------------------------------------


def test_torchvision_enum_member_loads_from_cache(checkpoint, hub_home, monkeypatch):
    """The real VGG16_BN_Weights / VGG16_Weights members (and .DEFAULT) load the cached file offline."""
    tv = pytest.importorskip("torchvision")
    batch_norm, state = checkpoint
    monkeypatch.setenv("TORCH_HOME", str(hub_home))
    enum = tv.models.VGG16_BN_Weights if batch_norm else tv.models.VGG16_Weights
    for member in (enum.IMAGENET1K_V1, enum.DEFAULT):
        model = SegNet(num_classes=11, batch_norm=batch_norm, weights_backbone=member)
        assert_encoder_matches(model.encoder, as_published(state), batch_norm)


def test_duck_typed_enum_member_loads_from_cache(checkpoint, hub_home, monkeypatch):
    """Any object with the right .url (torchvision not needed) loads the cached file offline."""
    batch_norm, state = checkpoint
    monkeypatch.setenv("TORCH_HOME", str(hub_home))
    member = SimpleNamespace(url=URLS[batch_norm])
    model = SegNet(num_classes=11, batch_norm=batch_norm, weights_backbone=member)
    assert_encoder_matches(model.encoder, as_published(state), batch_norm)


@BN
def test_duck_typed_member_of_the_other_flavour_is_rejected(batch_norm):
    """A VGG16 weights member for a BN model (or vice versa) is a ValueError naming both files."""
    with pytest.raises(ValueError) as info:
        SegNet(num_classes=11, batch_norm=batch_norm, weights_backbone=SimpleNamespace(url=URLS[not batch_norm]))
    assert VGG16_FILE in str(info.value) and VGG16_BN_FILE in str(info.value)


def test_torchvision_member_of_the_other_flavour_is_rejected():
    """The real VGG16_Weights.IMAGENET1K_V1 on a batch_norm=True model is a ValueError naming both files."""
    tv = pytest.importorskip("torchvision")
    with pytest.raises(ValueError) as info:
        SegNet(num_classes=11, batch_norm=True, weights_backbone=tv.models.VGG16_Weights.IMAGENET1K_V1)
    assert VGG16_FILE in str(info.value) and VGG16_BN_FILE in str(info.value)
    with pytest.raises(ValueError, match=VGG16_BN_FILE):
        SegNet(num_classes=11, batch_norm=False, weights_backbone=tv.models.VGG16_BN_Weights.IMAGENET1K_V1)


def test_member_with_unknown_url_is_rejected():
    """A weights member for some other checkpoint (e.g. VGG19) is a ValueError, never a download."""
    with pytest.raises(ValueError, match="vgg19-dcbb9e9d.pth"):
        resolve_backbone_weights(SimpleNamespace(url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"), False)


# --- local files, bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize("as_type", [str, Path], ids=["str", "Path"])
def test_local_file_path(as_type, features_bn, tmp_path):
    """A path (str or pathlib.Path) to a torchvision-layout file loads it."""
    path = tmp_path / "my_vgg16_bn.pth"
    torch.save(features_bn, path)
    model = SegNet(num_classes=11, batch_norm=True, weights_backbone=as_type(path))
    assert_encoder_matches(model.encoder, features_bn, True)


@pytest.mark.parametrize("value", ["does/not/exist.pth", "imagenet", "IMAGENET1K_V2", ""])
def test_unknown_name_or_missing_path_lists_valid_names(value):
    """A string that is neither a known name nor an existing file is a ValueError listing the names."""
    with pytest.raises(ValueError) as info:
        SegNet(num_classes=11, weights_backbone=value)
    assert "DEFAULT" in str(info.value) and "IMAGENET1K_V1" in str(info.value)


@pytest.mark.parametrize("value", [3, 3.5, b"DEFAULT", ["DEFAULT"]], ids=["int", "float", "bytes", "list"])
def test_wrong_type_is_a_type_error(value):
    """weights_backbone of an unsupported type is a TypeError."""
    with pytest.raises(TypeError):
        SegNet(num_classes=11, weights_backbone=value)


def test_none_means_no_weights():
    """weights_backbone=None resolves to nothing."""
    assert resolve_backbone_weights(None, batch_norm=True) is None


def test_one_channel_model_adapts_the_rgb_filters_to_give_the_rgb_answer_on_grey(features_bn):
    """in_channels=1: the first conv is the sum of the RGB filters, so on a grey image it gives what
    the checkpoint's RGB conv gives on that image replicated to three channels; the rest is as loaded."""
    model = SegNet(num_classes=11, in_channels=1, weights_backbone=features_bn)
    first = conv_bn_modules(model.encoder)[0][0]
    reference = meta_model(batch_norm=True, classifier=False).features[0].to_empty(device="cpu")
    reference.load_state_dict({"weight": features_bn["features.0.weight"], "bias": features_bn["features.0.bias"]})
    grey = torch.rand(2, 1, 9, 11, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first(grey), reference(grey.expand(-1, 3, -1, -1)), rtol=1e-5, atol=1e-5)
    assert first.weight.shape == (64, 1, 3, 3)
    rest = {k: v for k, v in features_bn.items() if k != "features.0.weight"}
    for (conv, bn), (ci, bi) in zip(conv_bn_modules(model.encoder)[1:], conv_bn_indices(batch_norm=True)[1:]):
        assert torch.equal(conv.weight, rest[f"features.{ci}.weight"]) and torch.equal(bn.running_var, rest[f"features.{bi}.running_var"])
    assert model.mean == (pytest.approx((0.485 + 0.456 + 0.406) / 3),) and model.std == (pytest.approx((0.229 + 0.224 + 0.225) / 3),)


@pytest.mark.parametrize("in_channels", [2, 4, 5, 7])
def test_other_channel_counts_repeat_rgb_cyclically_scaled_by_3_over_n(features_bn, in_channels):
    """N channels: filter channel c is the RGB filter c % 3 times 3 / N (timm's adapt_input_conv), and
    the input statistics repeat the same way."""
    model = SegNet(num_classes=11, in_channels=in_channels, weights_backbone=features_bn)
    weight = conv_bn_modules(model.encoder)[0][0].weight
    rgb = features_bn["features.0.weight"]
    for c in range(in_channels):
        torch.testing.assert_close(weight[:, c], rgb[:, c % 3] * 3 / in_channels)
    assert model.mean == tuple((0.485, 0.456, 0.406)[c % 3] for c in range(in_channels))


def test_adapt_first_conv_argument_errors():
    with pytest.raises(ValueError, match=r"RGB conv filters \(out, 3, kh, kw\)"):
        adapt_first_conv(torch.zeros(64, 4, 3, 3), 1)
    with pytest.raises(ValueError, match="in_channels must be an int >= 1"):
        adapt_first_conv(torch.zeros(64, 3, 3, 3), 0)


def test_checkpoint_that_does_not_fit_loads_nothing(features_bn):
    """A checkpoint with one late tensor of the wrong shape is a ValueError and leaves the encoder untouched."""
    bad = dict(features_bn)
    bad["features.41.running_var"] = torch.ones(256)  # conv5_3's BN: the very last tensor
    target = nn.ModuleDict({"encoder": VGGEncoder(batch_norm=True)})
    before = {k: v.clone() for k, v in target.state_dict().items()}
    assert not torch.equal(before["encoder.stages.0.0.conv.weight"], bad["features.0.weight"])
    with pytest.raises(ValueError, match="running_var"):
        load_vgg_backbone(target, bad, batch_norm=True, progress=False)
    after = target.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    with pytest.raises(ValueError):
        SegNet(num_classes=11, weights_backbone=bad)


# --- WeightsEntry ---------------------------------------------------------------------------------


@BN
def test_entry_file_name_hash_prefix_url(batch_norm):
    """The entries name torchvision's files and their sha256 prefixes."""
    entry = backbone_entry(batch_norm)
    assert entry.url == URLS[batch_norm]
    assert entry.file_name == file_name(batch_norm)
    assert entry.hash_prefix == ("6c64b313" if batch_norm else "397923af")
    assert entry.batch_norm is batch_norm
    assert WeightsEntry("X", "https://example.org/a/b/net-0123abcd.pth", False, 1).hash_prefix == "0123abcd"


@BN
def test_entry_cache_path_honours_torch_home(batch_norm, tmp_path, monkeypatch):
    """cache_path() is $TORCH_HOME/hub/checkpoints/<file name>."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))
    expected = tmp_path / "elsewhere" / "hub" / "checkpoints" / file_name(batch_norm)
    assert backbone_entry(batch_norm).cache_path() == expected


@BN
def test_entry_num_params(batch_norm):
    """num_params is torchvision's published count, which is also the hand-made layout's parameter count."""
    expected = 138_365_992 if batch_norm else 138_357_544
    assert backbone_entry(batch_norm).num_params == expected
    assert sum(p.numel() for p in meta_model(batch_norm=batch_norm).parameters()) == expected


@BN
def test_entries_match_torchvision_meta(batch_norm):
    """URL and num_params agree with torchvision's own weights enum."""
    tv = pytest.importorskip("torchvision")
    member = (tv.models.VGG16_BN_Weights if batch_norm else tv.models.VGG16_Weights).IMAGENET1K_V1
    entry = backbone_entry(batch_norm)
    assert entry.url == member.url
    assert entry.num_params == member.meta["num_params"]
    transforms = member.transforms()
    assert list(entry.mean) == list(transforms.mean) and list(entry.std) == list(transforms.std)


def test_one_channel_model_loads_the_published_rgb_file_offline(checkpoint, hub_home, monkeypatch):
    """A grayscale model asking for "DEFAULT" reads the cached RGB file (no download) and adapts it."""
    batch_norm, state = checkpoint
    monkeypatch.setenv("TORCH_HOME", str(hub_home))
    model = SegNet(num_classes=3, in_channels=1, batch_norm=batch_norm, weights_backbone="DEFAULT", progress=False)
    first = conv_bn_modules(model.encoder)[0][0]
    torch.testing.assert_close(first.weight, state["features.0.weight"].sum(1, keepdim=True))
