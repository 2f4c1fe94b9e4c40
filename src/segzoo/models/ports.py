"""Converters from other PyTorch ports' checkpoints to segzoo models.

Each port's layer names are mapped onto segzoo's by a key map derived from the same
:data:`~segzoo.models.vgg.VGG16` stage description that builds the modules; a checkpoint loads
all-or-nothing (:func:`segzoo.io.state_dict.load_renamed`) and errors name the port's own keys.
The model classes expose these as classmethods: ``SegNet.from_segnet_pytorch``,
``FCN32s/16s/8s.from_pytorch_fcn``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from torch import nn

from ..io.state_dict import StateDictSource, load_renamed, preview_keys, read_state_dict, unknown_layers
from .blocks import mirror
from .vgg import VGG16

ModelT = TypeVar("ModelT", bound=nn.Module)


def from_segnet_pytorch(cls: type[ModelT], checkpoint: StateDictSource, **kwargs: Any) -> ModelT:
    """``cls`` (a SegNet) built and loaded from the widely used PyTorch SegNet port's state dict."""
    state = read_state_dict(checkpoint)
    for key in ("conv11.weight", "conv11d.weight"):
        if key not in state:
            raise ValueError(f"not a PyTorch SegNet port state dict: no {key!r} among {preview_keys(state)}")
    unknown = unknown_layers(state, SEGNET_PORT_KEYS)
    if unknown:
        raise ValueError(f"unexpected keys for the PyTorch SegNet port layout: {preview_keys(unknown)}")
    model = cls(num_classes=state["conv11d.weight"].shape[0], in_channels=state["conv11.weight"].shape[1], **kwargs)
    load_renamed(model, state, SEGNET_PORT_KEYS, "the PyTorch SegNet port checkpoint")
    return model


def _segnet_port_key_map() -> dict[str, str]:
    """``conv11`` -> ``encoder.stages.0.0.conv`` ... ``conv11d`` -> ``classifier``, from the stage lists."""
    mapping = {}
    for s, widths in enumerate(VGG16):
        for c in range(len(widths)):
            port = f"{s + 1}{c + 1}"
            mapping[f"conv{port}"] = f"encoder.stages.{s}.{c}.conv"
            mapping[f"bn{port}"] = f"encoder.stages.{s}.{c}.bn"
    # decoder stage d mirrors encoder stage len-1-d; its convs count down (conv53d, conv52d, conv51d)
    for d, widths in enumerate(mirror(VGG16)):
        s = len(VGG16) - d
        for c in range(len(widths)):
            port = f"{s}{len(widths) - c}d"
            if port == "11d":
                mapping["conv11d"] = "classifier"
            else:
                mapping[f"conv{port}"] = f"decoder.{d}.{c}.conv"
                mapping[f"bn{port}"] = f"decoder.{d}.{c}.bn"
    return mapping


SEGNET_PORT_KEYS = _segnet_port_key_map()


def from_pytorch_fcn(cls: type[ModelT], checkpoint: StateDictSource, **kwargs: Any) -> ModelT:
    """``cls`` (FCN32s, FCN16s or FCN8s) built with the Caffe geometry and no BN, loaded from the
    Caffe-faithful PyTorch FCN port's state dict."""
    state = read_state_dict(checkpoint)
    for key in ("conv1_1.weight", "score_fr.weight"):
        if key not in state:
            raise ValueError(f"not a PyTorch FCN port state dict: no {key!r} among {preview_keys(state)}")
    variant = next((name for name, final in PORT_FINAL_UPSAMPLER.items() if f"{final}.weight" in state), None)
    if variant is not None and variant != cls.__name__:
        raise ValueError(f"this is a PyTorch {variant} port checkpoint: use {variant}.from_pytorch_fcn")
    key_map = pytorch_fcn_key_map(cls.stride)  # type: ignore[attr-defined]
    unknown = unknown_layers(state, key_map)
    if unknown:
        raise ValueError(f"unexpected keys for the PyTorch {cls.__name__} port layout: {preview_keys(unknown)}")
    model = cls(
        num_classes=state["score_fr.weight"].shape[0],
        in_channels=state["conv1_1.weight"].shape[1],
        batch_norm=False,
        geometry="caffe",
        **kwargs,
    )
    load_renamed(model, state, key_map, f"the PyTorch {cls.__name__} port checkpoint")
    return model


def pytorch_fcn_key_map(stride: int) -> dict[str, str]:
    """The port's layer names -> segzoo's for the FCN of output ``stride`` 32, 16 or 8."""
    mapping = {
        f"conv{s + 1}_{c + 1}": f"encoder.stages.{s}.{c}.conv" for s, widths in enumerate(VGG16) for c in range(len(widths))
    }
    mapping.update({name: name for name in ("fc6", "fc7", "score_fr")})
    if stride <= 16:
        mapping.update(score_pool4="score_pool4", upscore2="upscore2")
    if stride == 8:
        mapping.update(score_pool3="score_pool3", upscore_pool4="upscore_pool4")
    mapping[PORT_FINAL_UPSAMPLER[f"FCN{stride}s"]] = "upscore"
    return mapping


#: the port names its last upsampler after the variant; segzoo calls it ``upscore`` in all three
PORT_FINAL_UPSAMPLER = {"FCN32s": "upscore", "FCN16s": "upscore16", "FCN8s": "upscore8"}
