"""Checkpoint converters: SegNet.from_segnet_pytorch and FCN*s.from_pytorch_fcn.

Each converter is checked against an independent re-implementation, written here from the
published ports' descriptions (not from segzoo code), of the network whose state dict it reads:
the widely used PyTorch SegNet port (``conv11, bn11, ..., conv11d``) and the Caffe-faithful
PyTorch FCN port (``conv1_1 .. conv5_3, fc6, fc7, score_fr, ...``). All weights, BN running
statistics and transposed-conv kernels are random, so any key mapped to the wrong place or left
at its default changes the output.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segzoo import FCN8s, FCN16s, FCN32s, SegNet
from segzoo.io.state_dict import load_exact

ATOL = RTOL = 1e-5


# --------------------------------------------------------------------------------------------
# Reference implementations
# --------------------------------------------------------------------------------------------

# SegNet port layers: (name, in, out). Encoder stages pool after their last conv; decoder stages
# unpool before their first conv. conv11d is the classifier (no BN, no ReLU).
_SEGNET_ENCODER = [
    [("11", None, 64), ("12", 64, 64)],
    [("21", 64, 128), ("22", 128, 128)],
    [("31", 128, 256), ("32", 256, 256), ("33", 256, 256)],
    [("41", 256, 512), ("42", 512, 512), ("43", 512, 512)],
    [("51", 512, 512), ("52", 512, 512), ("53", 512, 512)],
]
_SEGNET_DECODER = [
    [("53d", 512, 512), ("52d", 512, 512), ("51d", 512, 512)],
    [("43d", 512, 512), ("42d", 512, 512), ("41d", 512, 256)],
    [("33d", 256, 256), ("32d", 256, 256), ("31d", 256, 128)],
    [("22d", 128, 128), ("21d", 128, 64)],
    [("12d", 64, 64), ("11d", 64, None)],
]


class SegNetPort(nn.Module):
    """The PyTorch SegNet port (trypag style): named convs/BNs, floor pooling with indices and
    unpooling without ``output_size`` (so it only runs on multiples of 32)."""

    def __init__(self, input_nbr: int, label_nbr: int) -> None:
        super().__init__()
        for stage in _SEGNET_ENCODER + _SEGNET_DECODER:
            for name, cin, cout in stage:
                cin, cout = cin or input_nbr, cout or label_nbr
                setattr(self, f"conv{name}", nn.Conv2d(cin, cout, 3, padding=1))
                if name != "11d":
                    setattr(self, f"bn{name}", nn.BatchNorm2d(cout))

    def _block(self, name, x):
        return F.relu(getattr(self, f"bn{name}")(getattr(self, f"conv{name}")(x)))

    def forward(self, x):
        indices = []
        for stage in _SEGNET_ENCODER:
            for name, _, _ in stage:
                x = self._block(name, x)
            x, idx = F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)
            indices.append(idx)
        for stage, idx in zip(_SEGNET_DECODER, reversed(indices)):
            x = F.max_unpool2d(x, idx, kernel_size=2, stride=2)
            for name, _, _ in stage:
                x = self.conv11d(x) if name == "11d" else self._block(name, x)
        return x


_VGG16_WIDTHS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
_FCN_FINAL_UPSCORE = {32: "upscore", 16: "upscore16", 8: "upscore8"}


class FCNPort(nn.Module):
    """The Caffe-faithful PyTorch FCN port (wkentaro style) of FCN-32s/16s/8s: conv1_1 padded by
    100, ceil-mode pools, valid 7x7 fc6, unpadded transposed convs and the reference crops."""

    def __init__(self, stride: int, n_class: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stride = stride
        cin = in_channels
        for s, widths in enumerate(_VGG16_WIDTHS, start=1):
            for c, cout in enumerate(widths, start=1):
                setattr(self, f"conv{s}_{c}", nn.Conv2d(cin, cout, 3, padding=100 if (s, c) == (1, 1) else 1))
                cin = cout
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.drop6 = nn.Dropout2d()
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.drop7 = nn.Dropout2d()
        self.score_fr = nn.Conv2d(4096, n_class, 1)
        if stride == 32:
            self.upscore = nn.ConvTranspose2d(n_class, n_class, 64, stride=32, bias=False)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(512, n_class, 1)
            self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        if stride == 16:
            self.upscore16 = nn.ConvTranspose2d(n_class, n_class, 32, stride=16, bias=False)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(256, n_class, 1)
            self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
            self.upscore8 = nn.ConvTranspose2d(n_class, n_class, 16, stride=8, bias=False)

    def forward(self, x):
        h = x
        pools = []
        for s, widths in enumerate(_VGG16_WIDTHS, start=1):
            for c in range(1, len(widths) + 1):
                h = F.relu(getattr(self, f"conv{s}_{c}")(h))
            h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            pools.append(h)
        pool3, pool4 = pools[2], pools[3]
        h = self.drop6(F.relu(self.fc6(h)))
        h = self.drop7(F.relu(self.fc7(h)))
        h = self.score_fr(h)
        if self.stride == 32:
            h = self.upscore(h)
            return h[:, :, 19 : 19 + x.size(2), 19 : 19 + x.size(3)]
        up = self.upscore2(h)
        skip = self.score_pool4(pool4)[:, :, 5 : 5 + up.size(2), 5 : 5 + up.size(3)]
        h = up + skip
        if self.stride == 16:
            h = self.upscore16(h)
            return h[:, :, 27 : 27 + x.size(2), 27 : 27 + x.size(3)]
        up = self.upscore_pool4(h)
        skip = self.score_pool3(pool3)[:, :, 9 : 9 + up.size(2), 9 : 9 + up.size(3)]
        h = self.upscore8(up + skip)
        return h[:, :, 31 : 31 + x.size(2), 31 : 31 + x.size(3)]


@torch.no_grad()
def randomize(module: nn.Module) -> nn.Module:
    """He-normal conv weights, random biases, random BN affine and running stats, random
    transposed-conv kernels: every tensor differs from any default, activations stay O(1)."""
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            overlap = (m.kernel_size[0] / m.stride[0]) ** 2  # inputs feeding each output pixel
            m.weight.normal_(0, 1 / math.sqrt(m.in_channels * overlap))
        elif isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.normal_(0, math.sqrt(2 / fan_in))
            m.bias.uniform_(-0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(123)
    return module.eval()


@torch.no_grad()
def assert_same_outputs(port: nn.Module, model: nn.Module, shape) -> None:
    """Both models give the same logits on one random batch of ``shape``."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    expected = port(x)
    # guard against a vacuous comparison: logits must be O(1), not vanishingly small
    assert 1e-2 < expected.std().item() < 1e3
    actual = model(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)


def _params_and_buffers(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# SegNet
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def segnet_port():
    torch.manual_seed(0)
    return randomize(SegNetPort(input_nbr=3, label_nbr=11))


@pytest.fixture(scope="module")
def segnet_sd(segnet_port):
    return segnet_port.state_dict()


@pytest.mark.parametrize("in_channels, num_classes", [(3, 11), (4, 5)])
def test_segnet_conversion_reproduces_port(in_channels, num_classes):
    """Every port tensor lands in its place: same logits at multiples of 32; channels inferred."""
    torch.manual_seed(1)
    port = randomize(SegNetPort(in_channels, num_classes))
    model = SegNet.from_segnet_pytorch(port.state_dict()).eval()
    assert (model.in_channels, model.num_classes) == (in_channels, num_classes)
    assert_same_outputs(port, model, (2, in_channels, 64, 96))
    assert_same_outputs(port, model, (1, in_channels, 32, 32))


def test_segnet_conversion_copies_num_batches_tracked(segnet_sd):
    """BN buffers that do not affect eval outputs (num_batches_tracked) are copied too."""
    model = SegNet.from_segnet_pytorch(segnet_sd)
    counters = [m.num_batches_tracked.item() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert counters == [123] * 25


def test_segnet_kwargs_pass_through(segnet_port, segnet_sd):
    """kwargs reach the constructor: ceil_mode=False gives the same logits at multiples of 32."""
    model = SegNet.from_segnet_pytorch(segnet_sd, ceil_mode=False).eval()
    assert model.encoder.ceil_mode is False
    assert_same_outputs(segnet_port, model, (1, 3, 32, 64))


def test_segnet_old_checkpoint_without_num_batches_tracked(segnet_port, segnet_sd):
    """Checkpoints from before PyTorch 0.4.1 lack num_batches_tracked; they still load exactly."""
    old = {k: v for k, v in segnet_sd.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(segnet_sd)
    model = SegNet.from_segnet_pytorch(old).eval()
    assert_same_outputs(segnet_port, model, (1, 3, 32, 32))


def test_segnet_loads_from_file(segnet_port, segnet_sd, tmp_path):
    """A torch.save'd state dict is read from a Path or a str path."""
    path = tmp_path / "segnet.pth"
    torch.save(segnet_sd, path)
    for source in (path, str(path)):
        model = SegNet.from_segnet_pytorch(source).eval()
        assert_same_outputs(segnet_port, model, (1, 3, 32, 32))


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model"])
def test_segnet_unwraps_training_checkpoint(segnet_port, segnet_sd, wrapper):
    """A training checkpoint {"state_dict": sd, ...} is unwrapped."""
    model = SegNet.from_segnet_pytorch({wrapper: segnet_sd, "epoch": torch.tensor(7)}).eval()
    assert_same_outputs(segnet_port, model, (1, 3, 32, 32))


def test_segnet_refuses_pickled_module(segnet_port, tmp_path):
    """A file holding a whole pickled module is refused (never unpickled) with a state-dict hint."""
    path = tmp_path / "whole_module.pth"
    torch.save(segnet_port, path)
    with pytest.raises(ValueError, match="state dict"):
        SegNet.from_segnet_pytorch(path)


def test_segnet_refuses_module_object(segnet_port):
    """Passing the module itself instead of its state dict is a TypeError naming what is expected."""
    with pytest.raises(TypeError, match="state dict"):
        SegNet.from_segnet_pytorch(segnet_port)


def test_segnet_missing_file_is_file_not_found(tmp_path):
    """A path that does not exist is a FileNotFoundError, not a confusing unpickling error."""
    with pytest.raises(FileNotFoundError):
        SegNet.from_segnet_pytorch(tmp_path / "nope.pth")


def test_segnet_missing_key(segnet_sd):
    """A state dict missing one buffer is refused, and the error names the missing key."""
    bad = dict(segnet_sd)
    del bad["bn22.running_var"]
    with pytest.raises(ValueError, match=r"missing \[bn22\.running_var\]"):
        SegNet.from_segnet_pytorch(bad)


def test_segnet_shape_mismatch(segnet_sd):
    """A tensor of the wrong shape is refused with both shapes in the message."""
    bad = dict(segnet_sd)
    bad["conv21.weight"] = torch.zeros(128, 32, 3, 3)
    with pytest.raises(ValueError, match=r"conv21\.weight: \(128, 32, 3, 3\) vs \(128, 64, 3, 3\)"):
        SegNet.from_segnet_pytorch(bad)


@pytest.mark.parametrize("extra", ["conv11.extra", "bn53d.extra_buffer", "fc6.weight", "conv11d_aux.weight"])
def test_segnet_unexpected_key(segnet_sd, extra):
    """Any key outside the port's layout is refused, whether or not its layer name is known."""
    bad = dict(segnet_sd)
    bad[extra] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected"):
        SegNet.from_segnet_pytorch(bad)


def _torchvision_vgg16_bn_layout():
    state, index, cin = {}, 0, 3
    for widths in _VGG16_WIDTHS:
        for cout in widths:
            state[f"features.{index}.weight"] = torch.zeros(cout, cin, 3, 3)
            state[f"features.{index}.bias"] = torch.zeros(cout)
            for p in ("weight", "bias", "running_mean", "running_var"):
                state[f"features.{index + 1}.{p}"] = torch.zeros(cout)
            index, cin = index + 3, cout
        index += 1
    return state


def test_segnet_refuses_other_layouts():
    """torchvision VGG keys and segzoo's own SegNet keys are not the port's layout."""
    with pytest.raises(ValueError):
        SegNet.from_segnet_pytorch(_torchvision_vgg16_bn_layout())
    with pytest.raises(ValueError):
        SegNet.from_segnet_pytorch(SegNet(num_classes=4).state_dict())


def test_load_exact_is_all_or_nothing():
    """A wrong shape in the last key leaves every parameter and buffer untouched; the same dict
    with that key fixed loads every tensor (so the unchanged check is not vacuous)."""
    torch.manual_seed(2)
    model = SegNet(num_classes=4)
    before = _params_and_buffers(model)
    new = {k: (v + 1 if v.is_floating_point() else v + 5) for k, v in before.items()}
    last = list(new)[-1]
    good_last = new[last]
    new[last] = torch.zeros(good_last.numel() + 1)
    with pytest.raises(ValueError, match="shape"):
        load_exact(model, new, "test checkpoint")
    after = _params_and_buffers(model)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)

    new[last] = good_last
    load_exact(model, new, "test checkpoint")
    loaded = _params_and_buffers(model)
    assert all(torch.equal(loaded[k], new[k]) for k in new)


def test_load_exact_missing_key_loads_nothing():
    """A missing key (other than num_batches_tracked) also leaves the model untouched."""
    model = SegNet(num_classes=4)
    before = _params_and_buffers(model)
    new = {k: v + 1 for k, v in before.items() if k != "classifier.bias"}
    with pytest.raises(ValueError, match="classifier.bias"):
        load_exact(model, new, "test checkpoint")
    after = _params_and_buffers(model)
    assert all(torch.equal(after[k], before[k]) for k in before)


# --------------------------------------------------------------------------------------------
# FCN
# --------------------------------------------------------------------------------------------

FCN_NUM_CLASSES = 5
_FCN_CLASSES = {32: FCN32s, 16: FCN16s, 8: FCN8s}
# (stride, in_channels): one case with a single input channel
_FCN_CASES = [(32, 1), (16, 3), (8, 3)]


@pytest.fixture(scope="module", params=_FCN_CASES, ids=lambda case: f"FCN{case[0]}s-in{case[1]}")
def fcn(request):
    """(stride, port, converted model); one variant alive at a time (pytest groups by param)."""
    stride, in_channels = request.param
    torch.manual_seed(stride)
    port = randomize(FCNPort(stride, FCN_NUM_CLASSES, in_channels))
    model = _FCN_CLASSES[stride].from_pytorch_fcn(port.state_dict()).eval()
    return stride, port, model


@pytest.mark.parametrize("size", [(32, 32), (45, 61), (97, 131)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_fcn_conversion_reproduces_port(fcn, size):
    """Same logits as the port, including odd sizes where the Caffe crops matter."""
    _, port, model = fcn
    assert_same_outputs(port, model, (1, model.in_channels, *size))


def test_fcn_converted_model_configuration(fcn):
    """Caffe geometry, no BN, channels read from the weights."""
    stride, port, model = fcn
    assert model.geometry == "caffe"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.encoder.modules())
    assert model.num_classes == FCN_NUM_CLASSES
    assert model.in_channels == port.conv1_1.in_channels
    assert type(model) is _FCN_CLASSES[stride]


def test_fcn_fixed_upsampling(fcn):
    """fixed_upsampling=True still loads the port's (random) upsampling kernels, frozen; the
    other layers stay trainable."""
    stride, port, _ = fcn
    model = _FCN_CLASSES[stride].from_pytorch_fcn(port.state_dict(), fixed_upsampling=True)
    pairs = [(model.upscore, getattr(port, _FCN_FINAL_UPSCORE[stride]))]
    if stride <= 16:
        pairs.append((model.upscore2, port.upscore2))
    if stride == 8:
        pairs.append((model.upscore_pool4, port.upscore_pool4))
    for ours, theirs in pairs:
        assert torch.equal(ours.weight, theirs.weight)
        assert not ours.weight.requires_grad
    transposed = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(transposed) == len(pairs)
    assert all(p.requires_grad for name, p in model.named_parameters() if not name.startswith("upscore"))


def test_fcn_refuses_other_variants_state_dicts(fcn):
    """A port state dict of one variant is refused by the other two, naming the right class."""
    stride, port, _ = fcn
    state = port.state_dict()
    right = _FCN_CLASSES[stride].__name__
    for other, cls in _FCN_CLASSES.items():
        if other != stride:
            with pytest.raises(ValueError, match=f"{right} port checkpoint: use {right}.from_pytorch_fcn"):
                cls.from_pytorch_fcn(state)


def test_fcn_refuses_dict_without_conv1_1(fcn):
    """A dict without the port's first conv is not the port's layout; the error says what is missing."""
    stride, port, _ = fcn
    state = {k: v for k, v in port.state_dict().items() if not k.startswith("conv1_1.")}
    with pytest.raises(ValueError, match="conv1_1"):
        _FCN_CLASSES[stride].from_pytorch_fcn(state)


def test_fcn_missing_final_upscore_is_refused(fcn):
    """Dropping the last upsampler (the one most easily forgotten by a key map) is an error."""
    stride, port, _ = fcn
    state = dict(port.state_dict())
    del state[f"{_FCN_FINAL_UPSCORE[stride]}.weight"]
    with pytest.raises(ValueError, match=rf"missing \[{_FCN_FINAL_UPSCORE[stride]}\.weight\]"):
        _FCN_CLASSES[stride].from_pytorch_fcn(state)
