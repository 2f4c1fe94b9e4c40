"""``segzoo.optimize``: a model compiled for inference at the hardware's speed, in float32, bfloat16 or int8.

Every path starts from :func:`fuse_for_inference` (BatchNorm folded, channels_last, compact
unpooling) and compiles it with inductor's *freezing*: the weights become constants of the graph,
so constant folding and oneDNN's weight prepacking happen once at compile time instead of at every
call.

- ``torch.float32``: the fused model compiled.
- ``torch.bfloat16``: the same under bf16 autocast inside the compiled graph (the casts of the
  frozen weights are folded away); only where the device computes bf16 natively (x86 AVX512-BF16 or
  AMX, Arm BF16, CUDA with ``torch.cuda.is_bf16_supported()``): emulated bf16 is slower than float32,
  so elsewhere it is a ``ValueError``. The first convolution and the class-score layers stay
  float32 (:func:`float_layer_names`), as FCN's ``score_fr`` always does on CPU
  (:mod:`segzoo.models.score`).
- ``"int8"``: post-training static quantization with PT2E and the x86 inductor quantizer (torchao's
  ``torchao.quantization.pt2e``; torch 2.14 no longer ships ``torch.ao.quantization.quantize_pt2e``),
  calibrated on ``calibration`` images; x86 CPUs only; needs ``pip install "segzoo[int8]"``. The first
  convolution and the class-score layers stay float32 (:func:`float_layer_names`). With
  ``compiled=False`` the SegNet family runs int8 eagerly instead (:mod:`segzoo.inference.eager_int8`:
  oneDNN's int8 convolutions from uint8 map to uint8 map, native unpooling, any size, no torchao),
  faster than its compiled graph, which keeps the slow compact unpooling.

Sizes: height and width are compiled as dynamic dimensions from the first call, so one compiled
graph serves every image size (the tiles of :class:`InferenceOptions`, the scales of its TTA, whole
images of any size). A second batch size costs one more compile, after which the batch is dynamic
too; sizes whose coarsest pooled map is 1 pixel wide get their own graph (inductor specialises sizes
0 and 1). Static per-size graphs would prepack every convolution (with dynamic sizes oneDNN reorders
the weights at each call) but recompile for every new size, which costs tens of seconds each.

``compiled=False`` skips inductor for float32 and bfloat16: the fused copy runs eagerly (bf16 under
autocast, the same layers in float32) with native unpooling, and on an x86 CPU its convolutions
are prepacked for oneDNN once with the ReLU after each fused in (:mod:`segzoo.inference.prepack`).
On a 2-core AMD EPYC (AVX512-BF16, no AMX) that beats the compiled graphs: SegNet-Basic at
1x3x360x480, fp32 444 against 916 ms, bf16 281 against 748 ms (medians of 3-5 alternating runs
beside a training job; eager bf16 timed with every layer under autocast). Most of the compiled
graphs' loss is the compact unpooling's element-wise code: with native unpooling the same graphs
took 536 ms (fp32) and 408 ms (bf16) at one size, but the dynamic-size fp32 graph failed its
second-size test, so the compiled paths keep compact. On a 2-core Xeon with AMX the split is the
same: SegNet bf16 128 ms eager (prepacked) against 635 ms compiled, while FCN-8s (no unpooling)
runs 115 ms compiled against 117 ms eager; ``segzoo predict/evaluate --fast auto`` follows it
(:func:`fast_compiled`).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_bool
from ..models._inputs import check_images
from ..models.base import SegmentationModel
from .eager_int8 import EagerInt8SegNet, eager_int8_supported
from .fuse import fuse_for_inference
from .prepack import X86_MACHINES, prepack_convolutions

#: the ``dtype`` values :func:`optimize` takes, and the ``segzoo predict/evaluate --fast`` names for them
FAST_DTYPES: dict[str, torch.dtype | str] = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": "int8"}


class OptimizedModel(nn.Module):
    """What :func:`optimize` returns: float32 (N, C, H, W) images in, float32 logits (N, K, H, W) out.

    Inference only: it always runs without gradients, ``train()`` is refused, and Monte Carlo dropout
    is refused (its dropout is frozen off). ``compiled`` says whether inductor compiled it.
    ``prepare``, ``num_classes``, ``in_channels``, ``mean`` and ``std`` are those of the model it was
    built from, so :func:`segzoo.inference.infer` and the prediction pipeline (tiles, flips, scales)
    take it like the model itself.
    """

    def __init__(
        self, fused: SegmentationModel, run: Callable[[Tensor], Tensor], dtype: torch.dtype | str, min_size: int, compiled: bool
    ) -> None:
        super().__init__()
        self.model = fused
        self.dtype = dtype
        self.min_size = min_size
        self.compiled = compiled
        self._run = run
        self._weight = next(fused.parameters())

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    @property
    def mean(self) -> tuple[float, ...]:
        return self.model.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.model.std

    def prepare(self, images: Any) -> Tensor:
        """See :meth:`SegmentationModel.prepare`: a float32 batch on the model's device."""
        return self.model.prepare(images)

    def train(self, mode: bool = True) -> OptimizedModel:
        if mode:
            raise ValueError("an optimized model is for inference only; train the model it was built from")
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        name = f"optimized {type(self.model).__name__} ({_dtype_name(self.dtype)})"
        check_images(x, self.in_channels, self.min_size, name, self._weight)
        x = x.contiguous(memory_format=torch.channels_last)
        if not self.compiled:
            with torch.no_grad():
                return self._run(x).float().contiguous()
        if self.dtype != "int8":  # int8 graphs are static: one per size (see the module docstring)
            for dim in (2, 3):
                torch._dynamo.maybe_mark_dynamic(x, dim)
        # freezing is read by dynamo as it traces (parameters become static inputs) and by inductor
        # as it compiles, from the global config: set around the call, not as a compile option
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            return self._run(x).float().contiguous()


def optimize(
    model: SegmentationModel,
    dtype: torch.dtype | str = torch.float32,
    calibration: Tensor | Iterable[Tensor] | None = None,
    compiled: bool = True,
) -> OptimizedModel:
    """A compiled inference copy of ``model``: BN folded, channels_last, frozen weights prepacked once.

    ``dtype`` is ``torch.float32``, ``torch.bfloat16`` (devices with native bf16 only) or ``"int8"``
    (x86 CPUs; needs ``calibration``: a normalised float32 batch (N, C, H, W) or an iterable of such
    batches, a few real images, run through the observers once). See the module docstring for what
    each does and for sizes. The first call compiles (tens of seconds to minutes on a small CPU);
    later calls at any size reuse it. ``model`` itself is not changed.

    ``compiled=False`` (float32 and bfloat16) runs the same fused copy eagerly, bf16 under autocast
    with the same float32 layers, its convolutions prepacked with their ReLUs fused (x86 CPUs): no
    compile wait, and on CPUs where inductor's convolutions do not
    beat oneDNN's eager ones it is the faster path (SegNet-Basic at 1x3x360x480, bf16, on a 2-core
    AMD EPYC, every layer under autocast: 281 ms eager against 748 ms compiled; README, Deployment).
    int8 with ``compiled=False`` runs the SegNet family only (:class:`EagerInt8SegNet`; other models
    are a ``ValueError``).
    """
    check_bool("compiled", compiled)
    if not isinstance(model, SegmentationModel):
        raise TypeError(f"optimize expects a segzoo SegmentationModel, got {type(model).__name__}")
    if isinstance(dtype, str) and dtype in FAST_DTYPES:
        dtype = FAST_DTYPES[dtype]
    if dtype not in FAST_DTYPES.values():
        raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or 'int8' (or one of {tuple(FAST_DTYPES)}), got {dtype!r}")
    weight = next(model.parameters())
    if weight.dtype != torch.float32:
        raise TypeError(f"optimize expects a float32 model, got {weight.dtype} weights; model.float() first")
    device = weight.device
    if dtype != "int8" and calibration is not None:
        raise ValueError("calibration images are for dtype='int8' only")
    if dtype == "int8" and not compiled and not eager_int8_supported(model):
        raise ValueError(
            f"uncompiled int8 runs the SegNet family only (segzoo.inference.eager_int8), got {type(model).__name__}; "
            "drop compiled=False"
        )
    if dtype == torch.bfloat16:
        check_native_bf16(device)
    # compiled graphs keep compact unpooling: int8 exports the model with free sizes first, which
    # native unpooling does not allow (segzoo.export), and inductor's dynamic-size graph of native
    # unpooling failed at a second size (fp32; see the module docstring)
    fused = fuse_for_inference(model, channels_last=True, unpooling="compact" if compiled else None)
    if dtype == "int8":
        batches = _calibration_batches(calibration, model, device)
        if not compiled:
            return OptimizedModel(fused, EagerInt8SegNet(fused, batches), dtype, fused.encoder.min_size, compiled=False)
        return OptimizedModel(fused, _quantized(fused, batches), dtype, _int8_min_size(fused), compiled=True)
    autocast = dtype == torch.bfloat16
    float_layers = float_layer_names(fused) if autocast else []
    if not compiled:
        if autocast:
            _cast_autocast_weights(fused, float_layers)
        if device.type == "cpu":
            prepack_convolutions(fused)
    for name in float_layers:
        fused.set_submodule(name, _Float32(fused.get_submodule(name)))

    def forward(x: Tensor) -> Tensor:
        with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            return fused(x)

    return OptimizedModel(fused, _compile(forward) if compiled else forward, dtype, fused.encoder.min_size, compiled)


def refuse_mc_dropout(mc_samples: int | None) -> None:
    """``ValueError`` when Monte Carlo dropout is asked of a fast path: compiling removes live
    dropout. Called before anything is compiled."""
    if mc_samples:
        raise ValueError("Monte Carlo dropout (--mc) needs live dropout, which --fast compiles away; drop one of them")


def fast_dtype(name: str, device: torch.device | str) -> torch.dtype | str:
    """The dtype ``segzoo predict/evaluate --fast NAME`` means on ``device``: ``"auto"`` is bfloat16
    where it is native (:func:`native_bf16`), float32 elsewhere; the others as :data:`FAST_DTYPES`."""
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    if name not in FAST_DTYPES:
        raise ValueError(f"fast must be 'auto' or one of {tuple(FAST_DTYPES)}, got {name!r}")
    return FAST_DTYPES[name]


def fast_compiled(name: str, model: nn.Module, device: torch.device | str, eager: bool = False) -> bool:
    """Whether ``segzoo predict/evaluate --fast NAME`` compiles ``model``: never with ``eager``;
    ``"auto"`` on a CPU runs models that max-unpool (the SegNet family) eagerly, whose compiled
    graphs keep the slow compact unpooling (SegNet at 1x3x360x480 in bf16: 128 ms eager against
    635 ms compiled on a 2-core Xeon with AMX; SegNet-Basic 281 against 748 ms on a 2-core AMD EPYC)
    and compiles the others (FCN-8s: 115 ms compiled, 117 ms eager on the Xeon, same run);
    ``"int8"`` runs the models eager int8 covers eagerly (:func:`eager_int8_supported`; SegNet at
    1x3x360x480: 616 ms eager against 823 ms compiled on a 2-core AVX2 EPYC) and compiles the
    others; ``"fp32"`` and ``"bf16"``, and ``"auto"`` on a GPU (not measured), compile."""
    if eager:
        return False
    if name == "int8":
        return not eager_int8_supported(model)
    return not (name == "auto" and torch.device(device).type == "cpu" and hasattr(model, "unpooling"))


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively (so bf16 is faster than float32 there)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from ..training.precision import cpu_has_native_bf16  # here: segzoo.training imports segzoo.inference

    return device.type == "cpu" and cpu_has_native_bf16()


def check_native_bf16(device: torch.device | str) -> None:
    """``ValueError`` unless ``device`` computes bfloat16 natively."""
    if not native_bf16(device):
        raise ValueError(
            f"bfloat16 is not native on {torch.device(device)} (needs x86 AVX512-BF16 or AMX, Arm BF16, or a CUDA GPU "
            "with bf16); emulated bf16 is slower than float32: use torch.float32 (--fast fp32)"
        )


def _compile(fn: Callable, dynamic: bool | None = None) -> Callable:
    # frozen (weights folded and prepacked once) when called as OptimizedModel.forward calls it
    return torch.compile(fn, dynamic=dynamic)


def _dtype_name(dtype: torch.dtype | str) -> str:
    return next(name for name, value in FAST_DTYPES.items() if value == dtype)


def _calibration_batches(calibration: Any, model: SegmentationModel, device: torch.device) -> list[Tensor]:
    if device.type != "cpu" or platform.machine().lower() not in X86_MACHINES:
        raise ValueError(f"int8 (the x86 inductor quantizer) runs on x86 CPUs only, got {device} on {platform.machine()}")
    if calibration is None:
        raise ValueError("dtype='int8' needs calibration images: a normalised float32 batch (N, C, H, W) or a list of them")
    batches = [calibration] if isinstance(calibration, Tensor) else list(calibration)
    if not batches:
        raise ValueError("calibration holds no images")
    for batch in batches:
        check_images(batch, model.in_channels, model.encoder.min_size, "calibration", next(model.parameters()))
    return batches


def _int8_min_size(model: SegmentationModel) -> int:
    from ..export import _smallest_exportable

    return _smallest_exportable(model)


class _Float32(nn.Module):
    """``layer`` computing in float32 under autocast (its output float32; later layers cast it down).
    Its other attributes (``out_channels``, which a model's ``num_classes`` reads) are the layer's."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "layer":  # not set yet: no layer to ask
                raise
            return getattr(self.layer, name)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.layer(x.float())


def _cast_autocast_weights(fused: nn.Module, float_layers: list[str]) -> None:
    """Store the weights of the layers that compute in bf16 (all but ``float_layers``) as bf16,
    once: eager autocast would otherwise cast every weight again at every call (a compiled graph
    folds those casts away). The outputs are bitwise the same; FCN-8s (134 M parameters) at
    1x3x360x480 on a 2-core Xeon with AMX ran in 197 instead of 278 ms."""
    kept = {id(p) for name in float_layers for p in fused.get_submodule(name).parameters()}
    for parameter in fused.parameters():
        if id(parameter) not in kept and parameter.is_floating_point():
            parameter.data = parameter.data.to(torch.bfloat16)


def float_layer_names(model: nn.Module) -> list[str]:
    """The layers the bf16 and int8 paths keep in float32: the first convolution, which sees the
    image, and every (transposed) convolution producing the class scores (SegNet's classifier,
    FCN's score and upscore layers). They hold a small share of the FLOPs, and in low precision
    they cost the most accuracy: on CamVid val, with a SegNet-Basic trained 5 epochs at 90x120
    (``examples/table1.py``), keeping them float32 lifts the argmax agreement with float32 from
    98.3% to 99.2% (int8) and from 98.6% to 99.0% (bf16 autocast). With the camvid-segnet-basic
    recipe's model (24 epochs at 360x480) the agreement is 99.52% (bf16) and 99.54% (int8).
    oneDNN also has no int8 kernel for FCN's score convolution fused with its skip addition
    (``qconv2d_pointwise.binary``: "could not create a primitive descriptor")."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    num_classes = getattr(model, "num_classes", None)
    return [name for i, (name, m) in enumerate(convs) if i == 0 or m.out_channels == num_classes]


def _detach_size_arithmetic(graph: torch.fx.GraphModule) -> None:
    """Forget which module the graph's size arithmetic came from.

    With free sizes, the export records the symbolic-int arithmetic of the sizes (pooled sizes,
    runtime asserts) as part of the first conv's source partition; the x86 quantizer then finds a
    conv partition with many outputs and refuses it ("Input partition has more than one output
    node"). Only tensor-valued nodes belong to a module's partition.
    """
    for node in graph.graph.nodes:
        if not isinstance(node.meta.get("val"), Tensor):
            for key in ("source_fn_stack", "torch_fn", "nn_module_stack"):  # what source partitions are read from
                node.meta.pop(key, None)


def _quantized(fused: SegmentationModel, batches: list[Tensor]) -> Callable:
    """PT2E: export with free sizes, insert observers, calibrate, convert, compile with freezing."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError as error:
        raise ImportError(f'dtype="int8" needs torchao\'s PT2E quantization: pip install "segzoo[int8]" ({error})') from None
    from ..export import export_program

    smallest = _int8_min_size(fused)
    example = tuple(batches[0].shape[-2:])
    if min(example) < smallest:
        raise ValueError(f"int8 calibration images must be at least {smallest}x{smallest}, got {example[0]}x{example[1]}")
    graph = export_program(fused, example_size=example).module()
    _detach_size_arithmetic(graph)
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    for name in float_layer_names(fused):
        quantizer.set_module_name_qconfig(name, None)
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in batches:
            prepared(batch.contiguous(memory_format=torch.channels_last))
    # static sizes: inductor's int8 conv lowering prepacks weights for a known input size only
    # (onednn.qconv_prepack has no dynamic-shape kernel in torch 2.14)
    return _compile(convert_pt2e(prepared), dynamic=False)
