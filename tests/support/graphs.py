"""Exported, compiled and ONNX graphs of a model against its eager forward (shared by the model tests)."""

import numpy as np
import torch
from torch import nn

from segzoo.export import export_onnx, export_program


def _images(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def assert_program_matches_eager(model: nn.Module, sizes=((1, 75, 101), (2, 33, 160)), max_size: int = 160) -> None:
    """A torch.export program traced at 64x96 equals the eager model at other (batch, h, w) sizes."""
    model.eval()
    module = export_program(model, example_size=(64, 96), max_size=max_size).module()
    for batch, height, width in sizes:
        x = _images(batch, height, width, seed=height)
        with torch.no_grad():
            torch.testing.assert_close(module(x), model(x), atol=1e-5, rtol=0)


def assert_compiled_matches_eager(model: nn.Module, sizes=((64, 96), (75, 101))) -> None:
    """One inductor-compiled module called at two sizes equals the eager model."""
    model.eval()
    torch._dynamo.reset()
    compiled = torch.compile(model)
    try:
        for height, width in sizes:
            x = _images(1, height, width, seed=height)
            with torch.no_grad():
                torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=0)
    finally:
        torch._dynamo.reset()


def assert_onnx_matches_eager(model: nn.Module, path) -> None:
    """The ONNX export run by onnxruntime equals the eager model at 2x3x75x101."""
    import onnxruntime

    model.eval()
    session = onnxruntime.InferenceSession(str(export_onnx(model, path, example_size=(64, 96))), providers=["CPUExecutionProvider"])
    x = _images(2, 75, 101, seed=0)
    with torch.no_grad():
        expected = model(x).numpy()
    (got,) = session.run(["logits"], {"images": x.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
