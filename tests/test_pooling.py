"""Pooling with indices and unpooling against the independent NumPy reference."""

import numpy as np
import pytest
import torch
from support.reference_pooling import pool, unpool

from segzoo.models.pooling import max_pool_with_indices, max_unpool

SIZES = [(2, 2), (5, 7), (45, 60), (23, 30), (97, 131)]
CASES = [(size, ceil) for size in SIZES for ceil in (True, False)] + [((1, 3), True)]


@pytest.mark.parametrize(("size", "ceil_mode"), CASES)
def test_pool_then_unpool_matches_reference(size, ceil_mode):
    """Values go back to exactly the positions they came from, at odd sizes and in both modes."""
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pooled, indices = max_pool_with_indices(x, ceil_mode)
    values, positions = pool(x.numpy(), ceil_mode)
    np.testing.assert_array_equal(pooled.numpy(), values)
    restored = max_unpool(pooled, indices, x.shape[-2:])
    assert restored.shape == x.shape
    np.testing.assert_array_equal(restored.numpy(), unpool(values, positions, size))


@pytest.mark.parametrize("channels_last", [False, True])
def test_native_unpool_keeps_bf16_under_autocast(channels_last):
    """Under CPU bf16 autocast (which would run max_unpool2d in float32) native unpooling of a bf16
    map returns bf16 holding exactly the reference's values: no float32 round trip of the map."""
    x = torch.randn(1, 4, 23, 30, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        pooled, indices = max_pool_with_indices(x, ceil_mode=True)
        restored = max_unpool(pooled, indices, x.shape[-2:])
    assert indices.dtype == torch.int64 and restored.dtype == torch.bfloat16
    values, positions = pool(x.float().numpy().astype(np.float64), True)
    np.testing.assert_array_equal(restored.float().numpy(), unpool(values, positions, (23, 30)))


def test_ties_go_to_the_first_position_in_the_window():
    """A constant window keeps its top-left element, in agreement with the reference."""
    x = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    pooled, indices = max_pool_with_indices(x, ceil_mode=True)
    restored = max_unpool(pooled, indices, x.shape[-2:]).numpy()
    np.testing.assert_array_equal(restored, unpool(*pool(x.numpy(), True), (3, 3)))
    assert restored[0, 0].tolist() == [[1, 0, 1], [0, 0, 0], [1, 0, 1]]


def test_unpool_needs_the_pre_pool_size():
    """Without the pre-pool size PyTorch infers 2x the pooled size, which is wrong for odd inputs."""
    x = torch.randn(1, 1, 45, 61)
    pooled, indices = max_pool_with_indices(x, ceil_mode=True)
    assert max_unpool(pooled, indices, (45, 61)).shape[-2:] == (45, 61)
    assert torch.nn.functional.max_unpool2d(pooled, indices, 2, 2).shape[-2:] == (46, 62)


# --- compact (uint8 window position) indices, compared with the native pair -------------------

BITS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16}
COMPACT_CASES = [((1, 1), True), ((2, 3), True), ((5, 7), True), ((5, 7), False), ((6, 9), False), ((8, 6), True)]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns, so that -0.0 differs from 0.0 and NaNs compare equal to themselves."""
    return t.contiguous().view(BITS[t.dtype])


def _window_positions(flat: torch.Tensor, width: int) -> torch.Tensor:
    """Native int64 flat indices in a plane of ``width`` -> row-major positions 0..3 in the window."""
    return (flat // width % 2) * 2 + flat % width % 2


def _inputs(kind: str, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(sum(size))
    if kind == "random":
        return torch.randn(2, 3, *size, generator=g).to(dtype)
    if kind == "constant":
        return torch.full((2, 3, *size), 0.5, dtype=dtype)
    # few distinct values, signed zeros among them: ties everywhere, and -0.0 vs 0.0 must not flip
    values = torch.tensor([-0.0, 0.0, 1.0, -1.0])
    return values[torch.randint(0, 4, (2, 3, *size), generator=g)].to(dtype)


def _pool_unpool(x: torch.Tensor, ceil_mode: bool, compact: bool, grad: torch.Tensor):
    """Pooled values, indices, unpooled map (of the doubled values) and the input's gradient."""
    x = x.detach().clone().requires_grad_()
    pooled, indices = max_pool_with_indices(x, ceil_mode, compact=compact)
    restored = max_unpool(pooled * 2, indices, x.shape[-2:])
    (restored * grad).sum().backward()
    return pooled.detach(), indices, restored.detach(), x.grad


def _assert_compact_is_native(x: torch.Tensor, ceil_mode: bool, grad: torch.Tensor) -> None:
    c_pooled, positions, c_restored, c_grad = _pool_unpool(x, ceil_mode, True, grad)
    n_pooled, flat, n_restored, n_grad = _pool_unpool(x, ceil_mode, False, grad)
    assert positions.dtype == torch.uint8
    assert torch.equal(positions.long(), _window_positions(flat, x.shape[-1]))
    for got, expected in ((c_pooled, n_pooled), (c_restored, n_restored), (c_grad, n_grad)):
        assert got.shape == expected.shape and torch.equal(_bits(got), _bits(expected))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("kind", ["random", "constant", "ties"])
@pytest.mark.parametrize(("size", "ceil_mode"), COMPACT_CASES)
def test_compact_equals_native_bitwise(size, ceil_mode, kind, dtype, channels_last):
    """Values, positions, unpooled maps and gradients equal the native pair bit for bit."""
    x = _inputs(kind, size, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    _assert_compact_is_native(x, ceil_mode, grad)


def test_compact_nan_follows_native():
    """F.max_pool2d moves to every NaN it meets, so a window pools to its last NaN (row-major)."""
    nan = float("nan")
    window = torch.tensor([[1.0, nan], [nan, 0.0]]).view(1, 1, 2, 2)
    assert max_pool_with_indices(window, True)[1].item() == 2  # flat index of the bottom-left NaN
    assert max_pool_with_indices(window, True, compact=True)[1].item() == 2  # bottom-left position
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 11, generator=g)
    x[torch.rand(x.shape, generator=g) < 0.3] = nan
    x[torch.rand(x.shape, generator=g) < 0.2] = float("-inf")
    grad = torch.randn(x.shape, generator=g)
    for ceil_mode in (True, False):
        _assert_compact_is_native(x, ceil_mode, grad)


def test_compact_indices_are_uint8_positions_eight_times_smaller():
    x = torch.randn(2, 4, 9, 10)
    pooled, positions = max_pool_with_indices(x, ceil_mode=True, compact=True)
    _, flat = max_pool_with_indices(x, ceil_mode=True)
    assert positions.dtype == torch.uint8 and positions.shape == pooled.shape == (2, 4, 5, 5)
    assert set(positions.unique().tolist()) <= {0, 1, 2, 3}
    assert flat.nbytes == 8 * positions.nbytes


@pytest.mark.parametrize("ceil_mode", [True, False])
def test_compact_gradcheck(ceil_mode):
    """The custom backward passes agree with finite differences, also for second derivatives."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: max_pool_with_indices(t, ceil_mode, compact=True)[0], (x,))
    pooled, positions = max_pool_with_indices(x.detach(), ceil_mode, compact=True)
    values = torch.randn(pooled.shape, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: max_unpool(v, positions, (5, 7)), (values,))
    assert torch.autograd.gradgradcheck(lambda v: max_unpool(v, positions, (5, 7)), (values,))


@pytest.fixture
def deterministic():
    previous, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def test_compact_runs_under_deterministic_algorithms(deterministic):
    """Forward and backward run (native max_unpool2d raises here on CPU too) and agree with the
    NumPy reference: the unpooled maxima, and a unit gradient at each maximum's position."""
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    pooled, positions = max_pool_with_indices(x, ceil_mode=True, compact=True)
    restored = max_unpool(pooled, positions, (7, 9))
    restored.sum().backward()
    expected = unpool(*pool(x.detach().numpy(), True), (7, 9))
    np.testing.assert_array_equal(restored.detach().numpy(), expected)
    np.testing.assert_array_equal(x.grad.numpy(), (expected != 0).astype(np.float64))


def _saved_bytes(compact: bool) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Bytes autograd keeps for backward across a pool + unpool pair (each storage counted once)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(2, 8, 30, 40, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        pooled, indices = max_pool_with_indices(x, ceil_mode=True, compact=compact)
        max_unpool(pooled, indices, x.shape[-2:])
    return sum(storages.values()), x, indices


def test_compact_saves_only_the_positions_for_backward():
    """Native keeps the input and int64 indices; compact keeps the uint8 positions alone."""
    native, x, flat = _saved_bytes(compact=False)
    compact, _, positions = _saved_bytes(compact=True)
    assert native == x.nbytes + flat.nbytes
    assert compact == positions.nbytes == x.numel() // 4
    assert compact < native


def test_compact_input_errors():
    x = torch.randn(1, 2, 6, 6)
    pooled, positions = max_pool_with_indices(x, ceil_mode=True, compact=True)
    with pytest.raises(TypeError, match="floating-point"):
        max_pool_with_indices(x.long(), ceil_mode=True, compact=True)
    with pytest.raises(ValueError, match="4-D"):
        max_pool_with_indices(x[0], ceil_mode=True, compact=True)
    with pytest.raises(ValueError, match="H, W >= 2"):
        max_pool_with_indices(x[..., :1], ceil_mode=False, compact=True)
    with pytest.raises(TypeError, match="int64 .* or uint8"):
        max_unpool(pooled, positions.int(), (6, 6))
    with pytest.raises(ValueError, match="one \\(N, C, h, w\\) shape"):
        max_unpool(pooled[:, :1], positions, (6, 6))
    with pytest.raises(ValueError, match="not the pre-pool size"):
        max_unpool(pooled, positions, (6, 9))
    assert max_unpool(pooled, positions, (5, 7)).shape[-2:] == (5, 7)


class _Nested(torch.nn.Module):
    """Three pool levels then three unpool levels: the nesting that breaks native under inductor."""

    def __init__(self, ceil_mode: bool, compact: bool = True) -> None:
        super().__init__()
        self.ceil_mode, self.compact = ceil_mode, compact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes, indices = [], []
        for _ in range(3):
            sizes.append(x.shape[-2:])
            x, where = max_pool_with_indices(x, self.ceil_mode, compact=self.compact)
            indices.append(where)
        for where, size in zip(reversed(indices), reversed(sizes)):
            x = max_unpool(x * 2, where, size)
        return x


@pytest.mark.parametrize("ceil_mode", [True, False])
def test_compact_exports_with_dynamic_sizes(ceil_mode):
    """One exported program serves odd and even sizes and equals the native pair in eager."""
    low = 9 if ceil_mode else 16  # smallest size whose third level is >= 2 (export specialises 0/1)
    dims = {2: torch.export.Dim("H", min=low), 3: torch.export.Dim("W", min=low)}
    program = torch.export.export(_Nested(ceil_mode), (torch.randn(1, 2, 19, 23),), dynamic_shapes={"x": dims})
    for size in [(19, 23), (32, 40), (low, 25), (17, low)]:
        x = torch.randn(1, 2, *size)
        expected = _Nested(ceil_mode, compact=False)(x)
        assert torch.equal(program.module()(x), expected) and torch.equal(_Nested(ceil_mode)(x), expected)


@pytest.mark.slow
@pytest.mark.isolated  # a crash inside inductor's compiled code fails this test, not the run
def test_compact_compiles_once_for_changing_sizes():
    """Inductor runs the nested levels forward and backward at odd and even sizes from one dynamic
    graph, and the outputs and input gradients equal the native pair's in eager."""
    torch._dynamo.reset()
    compiled = torch.compile(_Nested(ceil_mode=True), dynamic=True)
    for size in [(19, 23), (32, 40), (17, 9)]:
        x = torch.randn(1, 2, *size)
        grad = torch.randn(1, 2, *size)
        got = _forward_backward(compiled, x, grad)
        expected = _forward_backward(_Nested(ceil_mode=True, compact=False), x, grad)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def _forward_backward(model, x, grad):
    x = x.clone().requires_grad_()
    out = model(x)
    (out * grad).sum().backward()
    return out.detach(), x.grad


# jit.trace, jit.save and the TorchScript ONNX exporter are deprecated, and warn so, in recent PyTorch
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_compact_traces_and_exports_to_onnx_with_dynamic_sizes(tmp_path):
    """jit.trace keeps plain ops (savable), and the TorchScript ONNX exporter's model runs in
    onnxruntime at sizes other than the traced one, equal to the native pair."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, x = _Nested(ceil_mode=True), torch.randn(1, 2, 19, 23)
    traced = torch.jit.trace(model, (x,))
    torch.jit.save(traced, tmp_path / "nested.pt")
    assert torch.equal(torch.jit.load(tmp_path / "nested.pt")(x), model(x))
    torch.onnx.export(model, (x,), tmp_path / "nested.onnx", dynamo=False, input_names=["x"], dynamic_axes={"x": {2: "H", 3: "W"}})
    session = ort.InferenceSession(tmp_path / "nested.onnx")
    for size in [(19, 23), (32, 40), (17, 9)]:
        x = torch.randn(1, 2, *size)
        (out,) = session.run(None, {"x": x.numpy()})
        assert torch.equal(torch.from_numpy(out), _Nested(ceil_mode=True, compact=False)(x))
