"""Checkpoint converters: SegNet.from_segnet_pytorch, FCN*s.from_pytorch_fcn (FCN8s also with
at_once=True), FCN8s.from_pytorch_semseg and SegNet.from_pytorch_semseg.

Each converter is checked against an independent re-implementation, written here from the
published ports' descriptions (not from segzoo code), of the network whose state dict it reads:
the widely used PyTorch SegNet port (``conv11, bn11, ..., conv11d``), the Caffe-faithful
PyTorch FCN port (wkentaro/pytorch-fcn: ``conv1_1 .. conv5_3, fc6, fc7, score_fr, ...``, and its
FCN8sAtOnce) and pytorch-semseg (meetshah1995/pytorch-semseg: ``fcn8s`` and ``segnet``). All
weights, BN running statistics and transposed-conv kernels are random, so any key mapped to the
wrong place or left at its default changes the output. The ports' trainers' own files
(``model_best.pth.tar``, ``*_best_model.pkl``) are built here the way those trainers write them.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import segzoo
from segzoo import FCN8s, FCN16s, FCN32s, SegNet, SegNetBasic
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

    # the pool taps are multiplied by these before their score layers (1: not at all)
    pool4_input_scale = 1.0
    pool3_input_scale = 1.0

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
        if self.pool4_input_scale != 1:
            pool4 = pool4 * self.pool4_input_scale
        skip = self.score_pool4(pool4)[:, :, 5 : 5 + up.size(2), 5 : 5 + up.size(3)]
        h = up + skip
        if self.stride == 16:
            h = self.upscore16(h)
            return h[:, :, 27 : 27 + x.size(2), 27 : 27 + x.size(3)]
        up = self.upscore_pool4(h)
        if self.pool3_input_scale != 1:
            pool3 = pool3 * self.pool3_input_scale
        skip = self.score_pool3(pool3)[:, :, 9 : 9 + up.size(2), 9 : 9 + up.size(3)]
        h = self.upscore8(up + skip)
        return h[:, :, 31 : 31 + x.size(2), 31 : 31 + x.size(3)]


class FCN8sAtOncePort(FCNPort):
    """pytorch-fcn's FCN8sAtOnce: FCN8s's layers and keys, but the pool4 and pool3 maps are scaled
    by 0.01 and 0.0001 before score_pool4 / score_pool3 (their biases are not scaled)."""

    pool4_input_scale = 0.01
    pool3_input_scale = 0.0001

    def __init__(self, n_class: int, in_channels: int = 3) -> None:
        super().__init__(8, n_class, in_channels)


def _vgg_block(cin: int, widths, first_padding: int = 1) -> nn.Sequential:
    """conv, ReLU, conv, ReLU, ..., ceil-mode 2x2 max pool: convs at even indices."""
    layers = []
    for i, cout in enumerate(widths):
        layers += [nn.Conv2d(cin, cout, 3, padding=first_padding if i == 0 else 1), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers, nn.MaxPool2d(2, stride=2, ceil_mode=True))


class SemsegFCN8s(nn.Module):
    """pytorch-semseg's ``fcn8s`` with learned upsampling (its default): ``conv_block1..5``
    Sequentials (conv1_1 padded by 100, ceil pools), ``classifier`` = fc6 (valid 7x7), ReLU,
    Dropout2d, fc7, ReLU, Dropout2d, score; ``score_pool4/3``, ``upscore2``, ``upscore4``,
    ``upscore8`` (unpadded transposed convs) and the crops 5, 9, 31."""

    def __init__(self, n_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        cin = in_channels
        for s, widths in enumerate(_VGG16_WIDTHS, start=1):
            setattr(self, f"conv_block{s}", _vgg_block(cin, widths, 100 if s == 1 else 1))
            cin = widths[-1]
        self.classifier = nn.Sequential(
            nn.Conv2d(512, 4096, 7),
            nn.ReLU(inplace=True),
            nn.Dropout2d(),
            nn.Conv2d(4096, 4096, 1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(),
            nn.Conv2d(4096, n_classes, 1),
        )
        self.score_pool4 = nn.Conv2d(512, n_classes, 1)
        self.score_pool3 = nn.Conv2d(256, n_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(n_classes, n_classes, 4, stride=2, bias=False)
        self.upscore4 = nn.ConvTranspose2d(n_classes, n_classes, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_classes, n_classes, 16, stride=8, bias=False)

    def forward(self, x):
        conv3 = self.conv_block3(self.conv_block2(self.conv_block1(x)))
        conv4 = self.conv_block4(conv3)
        score = self.classifier(self.conv_block5(conv4))
        up2 = self.upscore2(score)
        pool4c = self.score_pool4(conv4)[:, :, 5 : 5 + up2.size(2), 5 : 5 + up2.size(3)]
        up4 = self.upscore4(up2 + pool4c)
        pool3c = self.score_pool3(conv3)[:, :, 9 : 9 + up4.size(2), 9 : 9 + up4.size(3)]
        out = self.upscore8(pool3c + up4)
        return out[:, :, 31 : 31 + x.size(2), 31 : 31 + x.size(3)].contiguous()


class _SemsegCBR(nn.Module):
    """pytorch-semseg's conv2DBatchNormRelu(cin, cout, 3, 1, 1): ``cbr_unit`` = conv, BN, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.cbr_unit = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=1, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True))

    def forward(self, x):
        return self.cbr_unit(x)


class _SemsegDown(nn.Module):
    """segnetDown2 / segnetDown3: 2 or 3 CBRs, then floor-mode 2x2 max pooling with indices;
    returns the pre-pool size too."""

    def __init__(self, cin: int, cout: int, convs: int) -> None:
        super().__init__()
        for i in range(1, convs + 1):
            setattr(self, f"conv{i}", _SemsegCBR(cin if i == 1 else cout, cout))
        self.convs = convs

    def forward(self, x):
        for i in range(1, self.convs + 1):
            x = getattr(self, f"conv{i}")(x)
        size = x.size()
        x, indices = F.max_pool2d(x, 2, 2, return_indices=True)
        return x, indices, size


class _SemsegUp(nn.Module):
    """segnetUp2 / segnetUp3: unpool to the pre-pool size, then CBRs (cin -> cin ..., last cin -> cout)."""

    def __init__(self, cin: int, cout: int, convs: int) -> None:
        super().__init__()
        for i in range(1, convs + 1):
            setattr(self, f"conv{i}", _SemsegCBR(cin, cout if i == convs else cin))
        self.convs = convs

    def forward(self, x, indices, size):
        x = F.max_unpool2d(x, indices, 2, 2, output_size=size)
        for i in range(1, self.convs + 1):
            x = getattr(self, f"conv{i}")(x)
        return x


class SemsegSegNet(nn.Module):
    """pytorch-semseg's ``segnet``: down1..down5 and up5..up1; up1's last CBR maps to the classes,
    so the logits pass through BatchNorm and ReLU."""

    def __init__(self, n_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        downs = [(in_channels, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3)]
        ups = [(512, 512, 3), (512, 256, 3), (256, 128, 3), (128, 64, 2), (64, n_classes, 2)]
        for i, args in enumerate(downs, start=1):
            setattr(self, f"down{i}", _SemsegDown(*args))
        for i, args in zip(range(5, 0, -1), ups):
            setattr(self, f"up{i}", _SemsegUp(*args))

    def forward(self, x):
        saved = []
        for i in range(1, 6):
            x, indices, size = getattr(self, f"down{i}")(x)
            saved.append((indices, size))
        for i in range(5, 0, -1):
            x = getattr(self, f"up{i}")(x, *saved.pop())
        return x


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


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model", "model_state"])
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


# --------------------------------------------------------------------------------------------
# Helpers for the ports' real checkpoints
# --------------------------------------------------------------------------------------------


def argmax_agreement(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Fraction of pixels whose predicted class is the same."""
    return (actual.argmax(1) == expected.argmax(1)).double().mean().item()


@torch.no_grad()
def assert_same_predictions(port: nn.Module, model: nn.Module, shape) -> None:
    """assert_same_outputs, plus the same class at every pixel, but for exact ties of the port's
    logits (ReLU'd logits may tie at 0), where either of the tied classes is accepted."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    expected = port(x)
    assert 1e-2 < expected.std().item() < 1e3
    actual = model(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)
    ours = actual.argmax(1, keepdim=True)
    top = expected.max(1, keepdim=True).values
    assert torch.all((ours == expected.argmax(1, keepdim=True)) | (expected.gather(1, ours) >= top - ATOL))


def sgd_state(params, lr: float, momentum: float) -> dict:
    """An SGD state dict with momentum buffers, as a trainer saves it after some steps."""
    params = list(params)
    optimizer = torch.optim.SGD(
        [{"params": params[::2]}, {"params": params[1::2], "lr": 2 * lr, "weight_decay": 0}],
        lr=lr,
        momentum=momentum,
        weight_decay=5e-4,
    )
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    for p in params:
        p.grad = None
    return optimizer.state_dict()


def pytorch_fcn_trainer_file(path, port: nn.Module, arch: str) -> None:
    """What torchfcn.Trainer.validate writes to checkpoint.pth.tar / model_best.pth.tar."""
    head = [p.detach().clone() for p in (port.score_fr.weight, port.score_fr.bias)]
    torch.save(
        {
            "epoch": 7,
            "iteration": 56000,
            "arch": arch,
            "optim_state_dict": sgd_state(head, 1e-10, 0.99),
            "model_state_dict": port.state_dict(),
            "best_mean_iu": np.float64(0.6312),  # label_accuracy_score's np.nanmean
        },
        path,
    )


def pytorch_semseg_trainer_checkpoint(port: nn.Module) -> dict:
    """What pytorch-semseg's train.py saves as {arch}_{dataset}_best_model.pkl: the model is wrapped
    in nn.DataParallel (keys ``module.*``), best_iou is runningScore's np.nanmean."""
    wrapped = nn.DataParallel(port)
    head = [torch.zeros(3, 2), torch.zeros(3)]
    state = sgd_state(head, 1e-10, 0.99)
    optimizer = torch.optim.SGD(head, lr=1e-10)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=300000, power=0.9)
    return {
        "epoch": 5001,
        "model_state": wrapped.state_dict(),
        "optimizer_state": state,
        "scheduler_state": scheduler.state_dict(),
        "best_iou": np.float64(0.5),
    }


# --------------------------------------------------------------------------------------------
# pytorch-fcn's FCN8sAtOnce and trainer files
# --------------------------------------------------------------------------------------------

AT_ONCE_CLASSES = 5


class TestFCN8sAtOnce:
    """pytorch-fcn's FCN8sAtOnce and its trainer's files; the big fixtures live for this class only."""

    @pytest.fixture(scope="class")
    @classmethod
    def at_once_port(cls):
        """A randomised FCN8sAtOnce whose score_pool4 / score_pool3 weights are as large as training
        with scaled inputs makes them (x100, x10000), so the skips matter as much as in a real one."""
        torch.manual_seed(80)
        port = randomize(FCN8sAtOncePort(AT_ONCE_CLASSES))
        with torch.no_grad():
            port.score_pool4.weight.mul_(100)
            port.score_pool3.weight.mul_(10000)
        return port

    @pytest.fixture(scope="class")
    @classmethod
    def at_once_model(cls, at_once_port):
        return FCN8s.from_pytorch_fcn(at_once_port.state_dict(), at_once=True).eval()

    @pytest.mark.parametrize("size", [(32, 32), (45, 61), (97, 131)], ids=lambda s: f"{s[0]}x{s[1]}")
    def test_fcn8s_at_once_reproduces_port(self, at_once_port, at_once_model, size):
        """at_once=True gives FCN8sAtOnce's logits (allclose) and classes at sizes where the crops matter."""
        assert_same_predictions(at_once_port, at_once_model, (1, 3, *size))

    @torch.no_grad()
    def test_fcn8s_at_once_is_needed(self, at_once_port):
        """Control: the same weights loaded as a plain FCN8s predict other classes (the keys are the
        same, so nothing else could tell), so the test above is not vacuous."""
        plain = FCN8s.from_pytorch_fcn(at_once_port.state_dict()).eval()
        x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(0))
        agreement = argmax_agreement(plain(x), at_once_port(x))
        assert agreement < 0.9, agreement

    def test_fcn8s_at_once_is_a_saved_model_option(self, at_once_port, at_once_model, tmp_path):
        """The skip scales live in the model config: a segzoo checkpoint rebuilds the at-once model
        alone, and the default FCN8s is unchanged (no such key, no scaling)."""
        assert at_once_model.config["skip_scales"] == (0.01, 0.0001)
        path = segzoo.save_checkpoint(tmp_path / "at_once.pt", at_once_model)
        reloaded = segzoo.load(path).eval()
        assert reloaded.config == at_once_model.config
        assert_same_predictions(at_once_port, reloaded, (1, 3, 45, 61))
        assert "skip_scales" not in FCN8s(num_classes=3).config

    @pytest.mark.parametrize("scales", [(0.01,), (0.01, 0.1, 1.0), (0.0, 1.0), (float("nan"), 1.0)])
    def test_fcn_skip_scales_are_checked(self, scales):
        """One positive finite scale per skip (FCN8s: pool4, pool3)."""
        with pytest.raises(ValueError, match="skip_scales"):
            FCN8s(num_classes=3, skip_scales=scales)

    @pytest.mark.parametrize("cls", [FCN32s, FCN16s], ids=lambda c: c.__name__)
    def test_at_once_is_fcn8s_only(self, cls):
        """pytorch-fcn has no at-once FCN32s / FCN16s."""
        with pytest.raises(ValueError, match="at_once"):
            cls.from_pytorch_fcn({}, at_once=True)

    def test_pytorch_fcn_trainer_file_loads(self, at_once_port, tmp_path):
        """torchfcn's model_best.pth.tar (model_state_dict, optimizer state, numpy best_mean_iu) loads."""
        path = tmp_path / "model_best.pth.tar"
        pytorch_fcn_trainer_file(path, at_once_port, "FCN8sAtOnce")
        model = FCN8s.from_pytorch_fcn(path, at_once=True).eval()
        assert_same_predictions(at_once_port, model, (1, 3, 45, 61))


# --------------------------------------------------------------------------------------------
# pytorch-semseg's fcn8s
# --------------------------------------------------------------------------------------------

SEMSEG_FCN_CLASSES = 4


class TestSemsegFCN8s:
    """pytorch-semseg's fcn8s; the big fixtures live for this class only."""

    @pytest.fixture(scope="class")
    @classmethod
    def semseg_fcn_port(cls):
        torch.manual_seed(88)
        return randomize(SemsegFCN8s(SEMSEG_FCN_CLASSES, in_channels=2))

    @pytest.fixture(scope="class")
    @classmethod
    def semseg_fcn_model(cls, semseg_fcn_port):
        return FCN8s.from_pytorch_semseg(semseg_fcn_port.state_dict()).eval()

    @pytest.mark.parametrize("size", [(32, 32), (45, 61), (97, 131)], ids=lambda s: f"{s[0]}x{s[1]}")
    def test_semseg_fcn8s_reproduces_port(self, semseg_fcn_port, semseg_fcn_model, size):
        """Same logits and classes as pytorch-semseg's fcn8s; channels read from the weights."""
        assert (semseg_fcn_model.in_channels, semseg_fcn_model.num_classes) == (2, SEMSEG_FCN_CLASSES)
        assert semseg_fcn_model.geometry == "caffe"
        assert_same_predictions(semseg_fcn_port, semseg_fcn_model, (1, 2, *size))

    def test_semseg_fcn8s_trainer_checkpoint(self, semseg_fcn_port):
        """train.py's dict (model_state with DataParallel's module. prefix, numpy best_iou) loads."""
        model = FCN8s.from_pytorch_semseg(pytorch_semseg_trainer_checkpoint(semseg_fcn_port)).eval()
        assert_same_predictions(semseg_fcn_port, model, (1, 2, 45, 61))

    def test_semseg_fcn8s_without_learned_upsampling_is_refused(self, semseg_fcn_port):
        """fcn8s(learned_billinear=False) (no upscore layers: nearest-neighbour F.upsample) and
        semseg's fcn32s / fcn16s are not this architecture: refused by name."""
        state = {k: v for k, v in semseg_fcn_port.state_dict().items() if not k.startswith("upscore")}
        with pytest.raises(ValueError, match="learned_billinear"):
            FCN8s.from_pytorch_semseg(state)
        fcn16s = {k: v for k, v in state.items() if not k.startswith("score_pool3")}
        with pytest.raises(ValueError, match="learned_billinear"):
            FCN8s.from_pytorch_semseg(fcn16s)

    def test_semseg_fcn8s_refuses_other_layouts(self, semseg_fcn_port):
        """pytorch-fcn's keys are not pytorch-semseg's, and the other way round."""
        with pytest.raises(ValueError, match="conv_block1"):
            FCN8s.from_pytorch_semseg(randomize(FCNPort(8, 3)).state_dict())
        with pytest.raises(ValueError, match="conv1_1"):
            FCN8s.from_pytorch_fcn(semseg_fcn_port.state_dict())


# --------------------------------------------------------------------------------------------
# pytorch-semseg's segnet
# --------------------------------------------------------------------------------------------


class TestSemsegSegNet:
    """pytorch-semseg's segnet; the fixtures live for this class only."""

    @pytest.fixture(scope="class")
    @classmethod
    def semseg_segnet_port(cls):
        torch.manual_seed(11)
        return randomize(SemsegSegNet(n_classes=11))

    @pytest.fixture(scope="class")
    @classmethod
    def semseg_segnet_model(cls, semseg_segnet_port):
        return SegNet.from_pytorch_semseg(semseg_segnet_port.state_dict()).eval()

    @pytest.mark.parametrize(
        "shape", [(1, 3, 32, 32), (2, 3, 64, 96), (1, 3, 45, 61), (1, 3, 97, 131)], ids=lambda s: f"{s[2]}x{s[3]}"
    )
    def test_semseg_segnet_reproduces_port(self, semseg_segnet_port, semseg_segnet_model, shape):
        """Same logits and classes as pytorch-semseg's segnet at any size it runs (H, W >= 32; odd
        sizes drop the last row / column in floor-mode pooling and unpool to the pre-pool size)."""
        assert_same_predictions(semseg_segnet_port, semseg_segnet_model, shape)

    def test_semseg_segnet_configuration(self, semseg_segnet_model):
        """Floor pooling and the BN + ReLU after the classifier, as documented options; channels read
        from the weights; nothing of it in a default SegNet."""
        config = semseg_segnet_model.config
        assert (config["num_classes"], config["in_channels"]) == (11, 3)
        assert config["ceil_mode"] is False and config["classifier_bn_relu"] is True
        default = SegNet(num_classes=11)
        assert "classifier_bn_relu" not in default.config
        assert not any(key.startswith("classifier_bn") for key in default.state_dict())

    @torch.no_grad()
    def test_semseg_segnet_options_are_needed(self, semseg_segnet_port, semseg_segnet_model):
        """Control: without the BN + ReLU after the classifier, or with ceil-mode pooling, the same
        weights predict other classes at 45x61, so the comparisons above are not vacuous."""
        x = torch.randn(1, 3, 45, 61, generator=torch.Generator().manual_seed(1))
        expected = semseg_segnet_port(x)
        raw = SegNet(num_classes=11, ceil_mode=False).eval()
        state = semseg_segnet_model.state_dict()
        raw.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier_bn")})
        ceil = SegNet(num_classes=11, ceil_mode=True, classifier_bn_relu=True).eval()
        ceil.load_state_dict(semseg_segnet_model.state_dict())
        for other in (raw, ceil):
            assert argmax_agreement(other(x), expected) < 0.95

    def test_semseg_segnet_other_channels(self):
        """in_channels and num_classes come from the weights."""
        torch.manual_seed(12)
        port = randomize(SemsegSegNet(n_classes=5, in_channels=4))
        model = SegNet.from_pytorch_semseg(port.state_dict()).eval()
        assert (model.in_channels, model.num_classes) == (4, 5)
        assert_same_predictions(port, model, (1, 4, 45, 61))

    def test_semseg_segnet_trainer_file(self, semseg_segnet_port, tmp_path):
        """{arch}_{dataset}_best_model.pkl as train.py writes it (DataParallel prefix, numpy best_iou,
        optimizer and scheduler states) loads from the file."""
        path = tmp_path / "segnet_camvid_best_model.pkl"
        torch.save(pytorch_semseg_trainer_checkpoint(semseg_segnet_port), path)
        model = SegNet.from_pytorch_semseg(path).eval()
        assert_same_predictions(semseg_segnet_port, model, (1, 3, 45, 61))

    def test_semseg_segnet_round_trips_through_checkpoint(self, semseg_segnet_port, semseg_segnet_model, tmp_path):
        """classifier_bn_relu is saved in the config: segzoo.load rebuilds the same network, and
        load_weights fills a SegNet built with the same options."""
        path = segzoo.save_checkpoint(tmp_path / "semseg.pt", semseg_segnet_model)
        reloaded = segzoo.load(path).eval()
        assert reloaded.config == semseg_segnet_model.config
        assert_same_predictions(semseg_segnet_port, reloaded, (1, 3, 45, 61))
        fresh = SegNet(num_classes=11, ceil_mode=False, classifier_bn_relu=True)
        segzoo.load_weights(fresh, path)
        assert_same_predictions(semseg_segnet_port, fresh.eval(), (1, 3, 32, 32))

    def test_semseg_segnet_refuses_other_layouts(self, semseg_segnet_port, segnet_sd):
        """The SegNet port's keys are not pytorch-semseg's, and the other way round."""
        with pytest.raises(ValueError, match="down1"):
            SegNet.from_pytorch_semseg(segnet_sd)
        with pytest.raises(ValueError, match="conv11"):
            SegNet.from_segnet_pytorch(semseg_segnet_port.state_dict())


# --------------------------------------------------------------------------------------------
# What every converter sets itself; DataParallel prefixes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "converter, key",
    [
        (lambda **kw: FCN8s.from_pytorch_fcn({}, **kw), "batch_norm"),
        (lambda **kw: FCN8s.from_pytorch_fcn({}, **kw), "geometry"),
        (lambda **kw: FCN16s.from_pytorch_fcn({}, **kw), "num_classes"),
        (lambda **kw: FCN32s.from_pytorch_fcn({}, **kw), "in_channels"),
        (lambda **kw: FCN8s.from_pytorch_fcn({}, **kw), "skip_scales"),
        (lambda **kw: FCN8s.from_pytorch_semseg({}, **kw), "geometry"),
        (lambda **kw: FCN8s.from_pytorch_semseg({}, **kw), "batch_norm"),
        (lambda **kw: SegNet.from_segnet_pytorch({}, **kw), "num_classes"),
        (lambda **kw: SegNet.from_segnet_pytorch({}, **kw), "batch_norm"),
        (lambda **kw: SegNet.from_pytorch_semseg({}, **kw), "ceil_mode"),
        (lambda **kw: SegNet.from_pytorch_semseg({}, **kw), "classifier_bn_relu"),
        (lambda **kw: SegNet.from_pytorch_semseg({}, **kw), "in_channels"),
    ],
)
def test_converters_refuse_the_options_they_set(converter, key):
    """An option the converter sets itself is a ValueError naming it, before anything is read
    (not Python's 'got multiple values for keyword argument')."""
    with pytest.raises(ValueError, match=key):
        converter(**{key: None})


@pytest.mark.parametrize("from_file", [False, True], ids=["mapping", "file"])
def test_converters_strip_data_parallel_prefix(segnet_port, segnet_sd, from_file, tmp_path):
    """A state dict saved from nn.DataParallel / DistributedDataParallel (every key prefixed
    module.) loads, from memory or a file, wrapped in a trainer dict or not."""
    wrapped = {f"module.{k}": v for k, v in segnet_sd.items()}
    source = {"state_dict": wrapped, "best_mean_iu": np.float64(0.5), "epoch": 4}
    if from_file:
        torch.save(source, tmp_path / "dp.pth")
        source = tmp_path / "dp.pth"
    model = SegNet.from_segnet_pytorch(source).eval()
    assert_same_outputs(segnet_port, model, (1, 3, 32, 32))


def test_load_weights_strips_data_parallel_prefix(tmp_path):
    """load_weights reads a segzoo checkpoint whose state dict was taken from a DDP-wrapped model."""
    torch.manual_seed(3)
    source = SegNetBasic(num_classes=4)
    checkpoint = {
        "format": "segzoo-checkpoint/1",
        "model": {"name": "segnet_basic", "config": source.config},
        "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
    }
    for given in (checkpoint, segzoo.io.checkpoint.save_atomic(checkpoint, tmp_path / "ddp.pt")):
        target = segzoo.load_weights(SegNetBasic(num_classes=4), given)
        assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())
