"""Hypothesis settings, strategies and checks shared by the property-based tests.

Property tests feed the models and public functions hostile input (random shapes, channel counts,
dtypes, memory layouts, empty batches, NaN/Inf and out-of-range labels): every call either does
what its contract says, checked against an independent computation, or raises a
ValueError/TypeError that segzoo itself raises, early, with a message that says what was
expected; never an error from deep inside torch or numpy.
"""

from __future__ import annotations

import math
import re
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import segzoo

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SEGZOO = Path(segzoo.__file__).resolve().parent
# a clear message says what was expected of the input
CLEAR = re.compile(r"expect|must|need|at least|outside|share")
# the same examples on every run (CI never flakes on a new one) and no example database in the checkout
CASES = {"deadline": None, "derandomize": True, "database": None}
#: runs a test with one intra-op thread (the ``one_thread`` fixture in conftest)
one_thread = pytest.mark.usefixtures("one_thread")


def assert_works_or_clear_error(fn):
    """``fn()``'s result, or the ValueError/TypeError it raised. The error must come from segzoo's own
    code (its innermost frame lies in the package, so it is not torch failing deep inside) and say
    what was expected; any other exception type (RuntimeError, IndexError, ...) fails the test."""
    try:
        return fn()
    except (ValueError, TypeError) as err:
        origin = Path(traceback.extract_tb(err.__traceback__)[-1].filename).resolve()
        assert origin.is_relative_to(SEGZOO), f"{type(err).__name__} raised in {origin}, not by segzoo: {err}"
        assert CLEAR.search(str(err)), f"the message does not say what was expected: {err}"
        return err


def assert_rejected(result, error: type[Exception], *mentions: object) -> None:
    """``result`` is an ``error`` whose message holds every one of ``mentions``."""
    assert isinstance(result, error), f"expected a {error.__name__}, got {result!r}"
    for mention in mentions:
        assert str(mention) in str(result), f"{mention!r} not in {result}"


def assert_accepted(result) -> None:
    """``result`` is a return value, not a rejection."""
    assert not isinstance(result, Exception), f"valid input rejected: {result}"


def assert_names_labels(result, labels: set[int]) -> None:
    """A ValueError that lists the offending labels (the first ten, sorted), not a silent clamp."""
    assert isinstance(result, ValueError), f"labels {sorted(labels)} were not reported: got {result!r}"
    for label in sorted(labels)[:10]:
        assert re.search(rf"(?<![\d-]){label}(?!\d)", str(result)), f"label {label} not named in: {result}"


# ---- label maps: confusion matrix, boundary F1, calibration, class weights, colours ----

IGNORES = [None, 255, -1]
LABEL_DTYPES = [torch.int64, torch.int32, torch.int16, torch.uint8]


@st.composite
def label_maps(draw, max_side: int = 7, scores: bool = True):
    """(prediction, target, num_classes, ignore_index): (N, H, W) labels, N and sides 0 included.

    Half the cases hold labels outside [0, num_classes) other than ignore_index (negative ones too,
    and the pad label -1, which every metric skips); labels are stored in a random integer dtype,
    where -1 becomes 255 for uint8 (and is then out of range, unless 255 is the ignore label). The prediction is sometimes float scores (N, C, H, W).
    """
    num_classes = draw(st.integers(1, 6))
    ignore = draw(st.sampled_from(IGNORES))
    shape = (draw(st.integers(0, 3)), draw(st.integers(0, max_side)), draw(st.integers(0, max_side)))
    valid = st.integers(0, num_classes - 1)
    if draw(st.booleans()):
        valid = st.one_of(valid, st.integers(-2, num_classes + 2))
    dtype = draw(st.sampled_from(LABEL_DTYPES))
    voids = [st.just(ignore)] if ignore is not None else []
    target = draw(hnp.arrays(np.int64, shape, elements=st.one_of(valid, *voids)))
    target = torch.from_numpy(target).to(dtype)
    if scores and draw(st.booleans()):
        floats = st.floats(-5, 5, width=32) | st.sampled_from([math.nan, math.inf, -math.inf])
        prediction = torch.from_numpy(draw(hnp.arrays(np.float32, (shape[0], num_classes, *shape[1:]), elements=floats)))
    else:
        prediction = torch.from_numpy(draw(hnp.arrays(np.int64, shape, elements=valid))).to(dtype)
    return prediction, target, num_classes, ignore


def counted_labels(target: np.ndarray, ignore) -> np.ndarray:
    """Where int64 labels count in every metric: neither ``ignore`` nor the pad label -1 (written
    out here, not read from segzoo)."""
    return (target != -1) & (target != ignore if ignore is not None else True)


def label_problems(prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore) -> tuple[set, set]:
    """Out-of-range target labels other than ``ignore`` and the pad label -1, and out-of-range
    predicted labels where the target is neither, from the stored values (uint8 -1 is 255)."""
    t = target.long().numpy()
    p = prediction.numpy().argmax(1) if prediction.is_floating_point() else prediction.long().numpy()
    counted = counted_labels(t, ignore)
    outside = lambda labels: set((labels[counted & ((labels < 0) | (labels >= num_classes))]).tolist())  # noqa: E731
    return outside(t), outside(p)
