"""Models as deployable graphs: ONNX files (``torch.onnx``'s dynamo exporter) and ``torch.export`` programs.

Both are captured with dynamic batch, height and width. A plain ``torch.export.export`` with free
height/width ``Dim``s (torch 2.15) refuses FCN and native-unpooling SegNet at any range, and
compact-unpooling SegNet below the bound given next, for three reasons:

* ceil-mode pooling: a pooled side is ``ceil(H / 2)`` only if the last window starts inside the
  input, ``2 * (ceil(H / 2) - 1) < H``. That holds for every ``H``, but the exporter cannot prove it
  for a symbol and keeps it as a guard it cannot verify;
* 0/1 specialisation: a pooled side may be 1 (the coarsest map of a 16x16 SegNet-Basic input is 1x1,
  of a 17x17 one 2x2), and the exporter treats size 1 as a special case (broadcasting);
* FCN's crops: cutting an upsampled map to a tap's size is a no-op for some sizes (multiples of 32
  among them) and not for others; the exporter specialises the graph to the example input's case.

The capture here therefore reasons about sizes size-obliviously (sizes 0 and 1 are not special cases)
and keeps the guards it cannot prove as runtime asserts instead of refusing; this is the recipe
``torch.onnx.export`` applies itself. That covers every size, multiples of 32 or not, from the
model's smallest input up for FCN and native-unpooling SegNet. The compact unpooling's strided
slices still need every pooled map to be at least 2x2: ``H, W >= 2**stages + 1`` with ceil-mode
pooling (17 for SegNet-Basic, 33 for SegNet), ``2**(stages + 1)`` without (32, 64); this is the
default lower bound for every model, so that the defaults export whichever unpooling a model uses.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor
from torch.export import Dim, ExportedProgram

from .io.atomic import atomic_write
from .models.base import SegmentationModel

#: ``(height, width)``, or one int for both sides
SizeBound = int | tuple[int, int]

#: names of the ONNX graph's input and output
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"


def export_program(
    model: SegmentationModel,
    example_size: SizeBound = (360, 480),
    min_size: SizeBound | None = None,
    max_size: SizeBound | None = None,
) -> ExportedProgram:
    """Capture ``model``'s eval-mode forward as a ``torch.export.ExportedProgram`` with free sizes.

    The program takes float (N, in_channels, H, W) with any N >= 1 and any ``min_size <= H, W <=
    max_size`` and returns logits (N, num_classes, H, W); call it as ``program.module()(images)``.
    Each bound is one int for both sides or ``(height, width)``; ``min_size`` defaults to the
    smallest input whose coarsest pooled map is 2x2 (see the module docstring: 17 for SegNet-Basic,
    33 for SegNet and FCN; FCN and native-unpooling SegNet also export from their smallest input
    up), ``max_size`` to no bound. ``example_size`` is the (H, W) traced and must lie between them.
    The model's train/eval modes are restored afterwards.
    """
    smallest = model.encoder.min_size
    example = _pair(example_size, "example_size")
    low = _pair(_smallest_exportable(model) if min_size is None else min_size, "min_size")
    high = None if max_size is None else _pair(max_size, "max_size")
    if min(low) < smallest:
        raise ValueError(f"min_size must be at least {smallest}, this model's smallest input; got {min_size!r}")
    for side, name in enumerate(("height", "width")):
        top = None if high is None else high[side]
        if example[side] < low[side] or (top is not None and example[side] > top):
            raise ValueError(
                f"example_size {name} {example[side]} is outside min_size..max_size = {low[side]}..{top or 'unbounded'}"
            )
    dims = {
        0: Dim("batch", min=1),
        2: Dim("height", min=low[0], max=None if high is None else high[0]),
        3: Dim("width", min=low[1], max=None if high is None else high[1]),
    }
    return _capture(model, _example(model, example, batch=2), (dims,))


def save_program(program: ExportedProgram, path: str | os.PathLike) -> Path:
    """``torch.export.save`` that replaces ``path`` only once completely written; returns the path.

    Read it back with ``torch.export.load(path)``; ``.pt2`` is the customary suffix.
    """
    with atomic_write(path) as file:
        torch.export.save(program, file)
    return Path(path)


def export_onnx(
    model: SegmentationModel,
    path: str | os.PathLike,
    example_size: SizeBound = (360, 480),
    dynamic: bool = True,
    opset: int | None = None,
) -> Path:
    """Write ``model``'s eval-mode forward as one self-contained ONNX file at ``path``; return the path.

    The graph's input ``images`` is float (batch, in_channels, height, width) and its output
    ``logits`` is (batch, num_classes, height, width). With ``dynamic`` the three sizes are free
    (height and width from :func:`export_program`'s default ``min_size`` up, multiples of 32 or
    not); without, they are fixed to (1, in_channels, *example_size). ``opset`` is the ONNX opset
    (default: the exporter's). Needs the ``onnx`` extra. The file replaces ``path`` only once
    completely written; the model's train/eval modes are restored afterwards.

    SegNet models are captured with native unpooling (int64 indices, ``F.max_unpool2d``), whose
    outputs equal the compact unpooling's bit for bit: its ONNX graph is 5x smaller (102 against
    510 nodes for SegNet-Basic) and onnxruntime runs it about 2x faster.
    """
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        raise ImportError('export_onnx needs the onnx and onnxscript packages: pip install "segzoo[onnx]"')
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool)):
        raise TypeError(f"opset must be an int or None, got {type(opset).__name__}")
    with _native_unpooling(model):
        if dynamic:
            program = export_program(model, example_size)
            names = ({0: "batch", 2: "height", 3: "width"},)  # only names the program's free sizes
        else:
            program = _capture(model, _example(model, _pair(example_size, "example_size"), batch=1), None)
            names = None
    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        dynamic_shapes=names,
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
        opset_version=opset,
        verbose=False,
    )
    with atomic_write(path) as file:
        # weights inside the file (protobuf's 2 GB limit; FCN-8s takes 0.54 GB): one file to hand on
        onnx_program.save(file, external_data=False)
    return Path(path)


def _capture(model: SegmentationModel, example: Tensor, dynamic_shapes: tuple | None) -> ExportedProgram:
    """``torch.export`` in eval mode with the size reasoning the module docstring explains."""
    # private, but what torch.onnx's own capture uses; imported here so that `import segzoo` never needs it
    from torch.fx.experimental import _config as fx_config

    with _eval_mode(model), fx_config.patch(backed_size_oblivious=True):
        return torch.export.export(
            model, (example,), dynamic_shapes=dynamic_shapes, prefer_deferred_runtime_asserts_over_guards=True
        )


@contextmanager
def _native_unpooling(model: torch.nn.Module) -> Iterator[None]:
    """A SegNet's unpooling switched to native inside (the forward reads it at each call)."""
    previous = getattr(model, "unpooling", None)
    if previous is None:
        yield
        return
    model.unpooling = "native"
    try:
        yield
    finally:
        model.unpooling = previous


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode inside; afterwards every submodule's own mode back (a frozen encoder stays in eval)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _example(model: SegmentationModel, size: tuple[int, int], batch: int) -> Tensor:
    parameter = next(model.parameters())
    return torch.randn(batch, model.in_channels, *size, dtype=parameter.dtype, device=parameter.device)


def _smallest_exportable(model: SegmentationModel) -> int:
    """The smallest side whose coarsest pooled map is 2 wide, as the compact unpooling needs."""
    stages, ceil_mode = len(model.encoder.stages), model.encoder.ceil_mode
    return 2**stages + 1 if ceil_mode else 2 ** (stages + 1)


def _pair(value: SizeBound, name: str) -> tuple[int, int]:
    """``value`` as (height, width); one int stands for both sides."""
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name} must be an int or (height, width) ints, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair
