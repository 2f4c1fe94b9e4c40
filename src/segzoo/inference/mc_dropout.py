"""Monte Carlo dropout uncertainty, as in Bayesian SegNet (Kendall et al., arXiv 1511.02680).

The model runs ``samples`` times with its dropout layers sampling and everything else in eval mode
(BatchNorm uses, and never updates, its running statistics). From the T softmax samples p_t:

- ``probabilities``: the mean p = (1/T) sum_t p_t, the prediction (``labels`` is its argmax);
- ``entropy``: predictive entropy H[p] = -sum_c p_c log p_c (total uncertainty, in nats);
- ``mutual_information``: H[p] - (1/T) sum_t H[p_t], the part due to the weights (epistemic);
- ``variance``: per-class variance of p_t over the samples, (1/T) sum_t p_t^2 - p^2 (Kendall's map
  is its mean over classes).

Entropy and mutual information lie in [0, log C].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .optimize import OptimizedModel


@dataclass(frozen=True)
class MCPrediction:
    """Monte Carlo dropout outputs for a batch of N images of H x W with C classes."""

    #: mean softmax probabilities (N, C, H, W)
    probabilities: Tensor
    #: predictive entropy (N, H, W), nats
    entropy: Tensor
    #: mutual information between prediction and weights (N, H, W), nats
    mutual_information: Tensor
    #: per-class variance of the sampled probabilities (N, C, H, W)
    variance: Tensor
    #: number of stochastic passes
    samples: int

    @property
    def labels(self) -> Tensor:
        """Class labels (N, H, W): the argmax of the mean probabilities."""
        return self.probabilities.argmax(1)


class _SampleMoments:
    """Running sums over softmax samples, so T samples never have to be held at once."""

    def __init__(self) -> None:
        self.count = 0
        self.total: Tensor | None = None
        self.squares: Tensor | None = None
        self.entropy: Tensor | None = None

    def add(self, probabilities: Tensor) -> None:
        """Add samples (S, N, C, H, W)."""
        probabilities = probabilities.double()
        total, squares = probabilities.sum(0), probabilities.square().sum(0)
        entropy = _entropy(probabilities).sum(0)
        if self.total is None:
            self.total, self.squares, self.entropy = total, squares, entropy
        else:
            self.total += total
            self.squares += squares
            self.entropy += entropy
        self.count += probabilities.shape[0]

    def result(self, dtype: torch.dtype) -> MCPrediction:
        if self.total is None or self.squares is None or self.entropy is None:
            raise ValueError("no samples were added")
        mean = self.total / self.count
        entropy = _entropy(mean)
        return MCPrediction(
            probabilities=mean.to(dtype),
            entropy=entropy.to(dtype),
            # clamped: in exact arithmetic MI >= 0 and the variance too (Jensen); rounding can dip below
            mutual_information=(entropy - self.entropy / self.count).clamp(min=0).to(dtype),
            variance=(self.squares / self.count - mean.square()).clamp(min=0).to(dtype),
            samples=self.count,
        )


def _entropy(probabilities: Tensor) -> Tensor:
    """Entropy over the class dimension (-3) with 0 log 0 = 0."""
    return -torch.xlogy(probabilities, probabilities).sum(-3)


def predictive_uncertainty(samples: Tensor) -> MCPrediction:
    """Mean, entropy, mutual information and variance of softmax samples (T, N, C, H, W), e.g. of an
    ensemble or of passes you ran yourself. Probabilities must be non-negative and sum to 1 over C."""
    if not isinstance(samples, Tensor):
        raise TypeError(f"expected softmax samples (T, N, C, H, W) as a torch.Tensor, got {type(samples).__name__}")
    if samples.dim() != 5 or not samples.is_floating_point():
        raise ValueError(f"expected float softmax samples (T, N, C, H, W), got {samples.dtype} {tuple(samples.shape)}")
    if samples.shape[0] < 1:
        raise ValueError("expected at least one sample")
    sums = samples.double().sum(2)
    if (samples < 0).any() or not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        raise ValueError("samples must be probabilities: non-negative and summing to 1 over the class dimension")
    moments = _SampleMoments()
    moments.add(samples)
    return moments.result(samples.dtype)


@torch.no_grad()
def mc_predict(
    model: nn.Module,
    images: Any,
    samples: int = 20,
    seed: int | None = None,
    batch_size: int | None = None,
) -> MCPrediction:
    """Monte Carlo dropout prediction: ``samples`` stochastic passes of ``model`` over ``images``.

    ``images`` are whatever :meth:`SegmentationModel.predict` takes (PIL images, uint8 arrays or
    tensors, or a normalised float batch (N, C, H, W)). Dropout layers sample, every other layer is in
    eval mode, and the model's modes are restored afterwards. The passes are batched: each forward
    holds ``batch_size`` image copies (default: all ``N * samples`` at once; lower it to save memory).
    With ``seed``, the dropout masks come from a private generator state, so the result is
    reproducible for the same seed and ``batch_size``, and the global RNG is left untouched.
    Build the model with dropout, e.g. ``SegNet(num_classes, dropout="central")`` (Bayesian SegNet).
    """
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if isinstance(model, OptimizedModel):
        raise ValueError("Monte Carlo dropout needs live dropout, which segzoo.optimize compiles away; sample the model it was built from")
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if not dropouts:
        raise ValueError(
            f"{type(model).__name__} has no dropout layers to sample; build it with dropout, "
            "e.g. SegNet(num_classes, dropout='central')"
        )
    batch = model.prepare(images) if hasattr(model, "prepare") else images
    if not isinstance(batch, Tensor) or batch.dim() != 4:
        raise ValueError(f"expected images as an (N, C, H, W) batch, got {type(batch).__name__}")
    count = batch.shape[0]
    per_forward = max(batch_size or count * samples, count)
    repeats = max(per_forward // count, 1)  # sample copies of the whole batch per forward
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for module in dropouts:
        module.train()
    moments = _SampleMoments()
    devices = [batch.device] if batch.device.type != "cpu" else []
    try:
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, samples, repeats):
                copies = min(repeats, samples - start)
                logits = model(batch.repeat(copies, 1, 1, 1)).float()
                moments.add(logits.softmax(1).unflatten(0, (copies, count)))
    finally:
        for module, training in modes.items():
            module.training = training
    return moments.result(batch.dtype if batch.is_floating_point() else torch.float32)


def normalised(values: Tensor, num_classes: int) -> Tensor:
    """Entropy or mutual information divided by its maximum, log C, so it lies in [0, 1]."""
    return values / math.log(num_classes) if num_classes > 1 else torch.zeros_like(values)
