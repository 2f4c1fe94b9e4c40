"""Non-finite scores are refused, never counted: argmax takes NaN for the largest value, so NaN
logits used to be counted as confident predictions of class 0 (or of whichever class held the NaN)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import segzoo
from segzoo.training import evaluate


def _logits(value):
    logits = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    logits[1, :, 2, 3] = value
    return logits, torch.zeros(2, 4, 5, dtype=torch.int64)


UPDATES = {
    "ConfusionMatrix": lambda: segzoo.ConfusionMatrix(3).update,
    "BoundaryF1": lambda: segzoo.BoundaryF1(3).update,
    "boundary_f1": lambda: lambda p, t: segzoo.boundary_f1(p, t, 3),
    "SegmentationMetrics": lambda: segzoo.SegmentationMetrics(3, boundary=True, calibration=True).update,
}


@pytest.mark.parametrize("metric", UPDATES)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_label_metrics_refuse_non_finite_scores(metric, value):
    logits, target = _logits(value)
    with pytest.raises(ValueError, match="non-finite") as info:
        UPDATES[metric]()(logits, target)
    assert "\n" not in str(info.value)


def test_a_refused_batch_counts_nowhere():
    matrix = segzoo.ConfusionMatrix(3)
    with pytest.raises(ValueError):
        matrix.update(*_logits(math.nan))
    assert matrix.matrix.sum() == 0
    matrix.update(*_logits(0.0))
    assert matrix.matrix.sum() == 40


def test_evaluating_a_model_with_non_finite_weights_is_refused():
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3)
    with torch.no_grad():
        model.classifier.bias[0] = math.nan
    data = TensorDataset(torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(model, DataLoader(data, batch_size=2))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_predict_refuses_non_finite_logits_instead_of_labelling_them_0(value):
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3)
    with torch.no_grad():
        model.classifier.bias[1] = value
    with pytest.raises(ValueError, match="non-finite"):
        model.predict(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
