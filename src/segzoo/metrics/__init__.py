"""Scores as the papers report them, accumulated over batches and processes.

``confusion`` (confusion matrix; G, C, mIoU, fwIoU; :class:`SegmentationScores` and its table),
``boundary`` (the boundary F1 score), ``calibration`` (expected calibration error), ``collection``
(:class:`SegmentationMetrics`, all of them from logits in one call), ``accumulator`` (the shared
reset / merge / all_reduce), ``class_weights`` (median-frequency balancing).
"""

from .boundary import BoundaryF1, BoundaryScores, boundary_f1
from .calibration import CalibrationError, expected_calibration_error
from .class_weights import median_frequency_weights
from .collection import SegmentationMetrics, upsample_logits
from .confusion import ConfusionMatrix, SegmentationScores, scores_from_confusion

__all__ = [
    "BoundaryF1",
    "BoundaryScores",
    "CalibrationError",
    "ConfusionMatrix",
    "SegmentationMetrics",
    "SegmentationScores",
    "boundary_f1",
    "expected_calibration_error",
    "median_frequency_weights",
    "scores_from_confusion",
    "upsample_logits",
]
