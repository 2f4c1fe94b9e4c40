"""models/small_maps.py: same-padded layers that pad their input themselves on CPU maps smaller
than the kernel, checked against the plain layer in float64, and the plain layer bit for bit
everywhere else."""

import copy

import pytest
import torch
from torch import nn

import segzoo
from segzoo.inference.prepack import packable, prepack_available, prepack_convolutions
from segzoo.models.small_maps import ExplicitPadConv2d, ExplicitPadConvTranspose2d, pads_explicitly

PAIRS = [(ExplicitPadConv2d, nn.Conv2d), (ExplicitPadConvTranspose2d, nn.ConvTranspose2d)]
KERNEL = 7


def _pair(kind, plain, **kwargs):
    torch.manual_seed(0)
    layer = kind(6, 5, KERNEL, padding=KERNEL // 2, **kwargs)
    reference = plain(6, 5, KERNEL, padding=KERNEL // 2, **kwargs)
    reference.load_state_dict(layer.state_dict())
    return layer, reference


def _output_and_grads(layer, x):
    x = x.clone().requires_grad_()
    out = layer(x)
    grads = torch.autograd.grad(out, (x, layer.weight, layer.bias), torch.ones_like(out) + torch.arange(out.numel()).view_as(out) % 3)
    return out, grads


@pytest.mark.parametrize(("kind", "plain"), PAIRS, ids=["conv", "transposed"])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (6, 8), (3, 12), (9, 4), (8, 10)])
def test_values_and_gradients_are_the_padded_layers(kind, plain, size):
    layer, reference = _pair(kind, plain)
    x = torch.randn(2, 6, *size, generator=torch.Generator().manual_seed(1))
    assert pads_explicitly(layer, x.requires_grad_()) == (min(size) < KERNEL)
    out, grads = _output_and_grads(layer, x)
    expected, expected_grads = _output_and_grads(reference.double(), x.double())
    assert out.shape == expected.shape == (2, 5, *size)
    torch.testing.assert_close(out, expected.float(), atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want.float(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(("kind", "plain"), PAIRS, ids=["conv", "transposed"])
def test_elsewhere_it_is_the_plain_layer_bit_for_bit(kind, plain):
    layer, reference = _pair(kind, plain)
    small, large = torch.randn(2, 6, 3, 5), torch.randn(2, 6, 9, 11)
    with torch.no_grad():  # inference: the padded kernel has no trouble forward
        assert not pads_explicitly(layer, small)
        assert torch.equal(layer(small), reference(small))
    assert not pads_explicitly(layer, large)  # large maps under autograd
    out, grads = _output_and_grads(layer, large)
    expected, expected_grads = _output_and_grads(reference, large)
    assert torch.equal(out, expected) and all(torch.equal(g, e) for g, e in zip(grads, expected_grads))
    layer.requires_grad_(False)  # nothing to differentiate
    assert not pads_explicitly(layer, small) and torch.equal(layer(small), reference(small))


def test_only_stride_one_zero_padded_layers_pad_explicitly():
    small = torch.randn(1, 6, 2, 2, requires_grad=True)
    assert pads_explicitly(ExplicitPadConv2d(6, 5, 7, padding=3), small)
    assert not pads_explicitly(ExplicitPadConv2d(6, 5, 7, padding=0), torch.randn(1, 6, 7, 9, requires_grad=True))
    assert not pads_explicitly(ExplicitPadConv2d(6, 5, 7, padding=3, stride=2), small)
    assert not pads_explicitly(ExplicitPadConv2d(6, 5, 7, padding=3, dilation=2), small)
    assert not pads_explicitly(ExplicitPadConv2d(6, 5, 7, padding=3, padding_mode="reflect"), torch.randn(1, 6, 4, 4, requires_grad=True))
    assert not pads_explicitly(ExplicitPadConv2d(6, 5, 7, padding="same"), small)
    transposed = ExplicitPadConvTranspose2d(6, 5, 7, padding=3)
    assert pads_explicitly(transposed, small)
    # an explicit output_size is the plain layer's business
    torch.testing.assert_close(transposed(small, output_size=[2, 2]), nn.ConvTranspose2d.forward(transposed, small))


def test_export_keeps_the_padded_layer():
    """The graphs of torch.export (and so ONNX and torch.compile) hold the layer as written, not
    the explicit pad: a program traced on a small map still runs at any size."""
    module = nn.Sequential(ExplicitPadConv2d(6, 5, 7, padding=3))
    program = torch.export.export(module, (torch.randn(1, 6, 2, 3),))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert not any("pad" in target for target in targets), targets
    (conv,) = [node for node in program.graph.nodes if "conv" in str(node.target)]
    assert list(conv.args[4]) == [3, 3]


def test_fcn_and_deconvnet_use_them_and_keep_their_keys():
    fcn = segzoo.FCN8s(num_classes=3)
    assert type(fcn.fc6) is ExplicitPadConv2d and fcn.fc6.padding == (3, 3)
    assert type(segzoo.FCN8s(num_classes=3, geometry="caffe").fc6) is ExplicitPadConv2d  # valid fc6: never pads
    deconvnet = segzoo.DeconvNet(num_classes=3)
    assert type(deconvnet.fc6.conv) is ExplicitPadConv2d and type(deconvnet.deconv_fc6.conv) is ExplicitPadConvTranspose2d
    assert list(deconvnet.fc6.state_dict()) == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]


@pytest.mark.skipif(not prepack_available(), reason="this PyTorch build has no oneDNN")
def test_prepacking_treats_the_conv_as_a_plain_one():
    layer = ExplicitPadConv2d(6, 5, 7, padding=3).eval()
    assert packable(layer)
    model = nn.Sequential(copy.deepcopy(layer), nn.ReLU())
    assert prepack_convolutions(model) == 1
    x = torch.randn(1, 6, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.relu(layer(x)), atol=1e-5, rtol=0)
