"""Using a trained model: prediction of files, tiles, test-time augmentation, Monte Carlo
dropout uncertainty, fast paths.

``pipeline`` (:func:`infer` with :class:`InferenceOptions`: working size, TTA, tiles and MC dropout
composed), ``tiling`` (sliding-window inference with Gaussian or mean blending), ``tta`` (flip and
multi-scale averaging), ``mc_dropout`` (Bayesian SegNet's Monte Carlo dropout: :func:`mc_predict`),
``predict`` (masks, overlays and uncertainty maps for image files), ``fuse``
(:func:`fuse_for_inference`: BatchNorm folded, channels_last), ``optimize`` (:func:`optimize`: the
compiled fp32 / bf16 / int8 fast paths), ``calibration`` (int8 calibration images from files).
"""

from .fuse import fuse_for_inference
from .mc_dropout import MCPrediction, mc_predict, predictive_uncertainty
from .optimize import OptimizedModel, optimize
from .pipeline import Inference, InferenceOptions, infer
from .predict import predict_files

__all__ = [
    "Inference",
    "InferenceOptions",
    "MCPrediction",
    "OptimizedModel",
    "fuse_for_inference",
    "infer",
    "mc_predict",
    "optimize",
    "predict_files",
    "predictive_uncertainty",
]
