"""Using a trained model: prediction of files, Monte Carlo dropout uncertainty, fast paths.

``predict`` (masks, overlays and uncertainty maps for image files), ``mc_dropout`` (Bayesian
SegNet's Monte Carlo dropout: :func:`mc_predict`), ``fuse`` (:func:`fuse_for_inference`: BatchNorm
folded, channels_last).
"""

from .fuse import fuse_for_inference
from .mc_dropout import MCPrediction, mc_predict, predictive_uncertainty
from .predict import predict_files

__all__ = ["MCPrediction", "fuse_for_inference", "mc_predict", "predict_files", "predictive_uncertainty"]
