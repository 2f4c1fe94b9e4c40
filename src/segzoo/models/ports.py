"""Converters from other PyTorch ports' checkpoints to segzoo models.

Each port's layer names are mapped onto segzoo's by a key map derived from the same
:data:`~segzoo.models.vgg.VGG16` stage description that builds the modules; a checkpoint loads
all-or-nothing (:func:`segzoo.io.state_dict.load_renamed`) and errors name the port's own keys.
The model classes expose these as classmethods: ``SegNet.from_segnet_pytorch``,
``FCN32s/16s/8s.from_pytorch_fcn`` (``FCN8s`` also ``at_once=True``), ``FCN8s.from_pytorch_semseg``
and ``SegNet.from_pytorch_semseg``. Each refuses, by name, the constructor options it sets itself.
The ports' trainers' own files load too: :func:`~segzoo.io.state_dict.read_state_dict` unwraps
``model_state_dict`` / ``model_state``, strips DataParallel's ``module.`` and reads numpy scalars.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from torch import nn

from ..io.state_dict import StateDictSource, load_renamed, preview_keys, read_state_dict, unknown_layers
from .blocks import mirror
from .vgg import VGG16

ModelT = TypeVar("ModelT", bound=nn.Module)


def refuse_own_options(converter: str, kwargs: Mapping[str, Any], own: Collection[str]) -> None:
    """A ``ValueError`` naming the options in ``kwargs`` that ``converter`` sets itself (from the
    weights or the port's architecture), instead of Python's "got multiple values for keyword"."""
    clash = [key for key in own if key in kwargs]
    if clash:
        raise ValueError(
            f"{converter} sets {', '.join(clash)} itself (from the weights or the port's architecture); "
            f"do not pass {'it' if len(clash) == 1 else 'them'}"
        )


def from_segnet_pytorch(cls: type[ModelT], checkpoint: StateDictSource, **kwargs: Any) -> ModelT:
    """``cls`` (a SegNet) built and loaded from the widely used PyTorch SegNet port's state dict."""
    own = ("num_classes", "in_channels", "batch_norm", "classifier_bn_relu")
    refuse_own_options("from_segnet_pytorch", kwargs, own)
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


#: what a converted FCN's constructor gets from the converter, never from the caller
_FCN_OWN_OPTIONS = ("num_classes", "in_channels", "batch_norm", "geometry", "skip_scales")
#: pytorch-fcn's FCN8sAtOnce multiplies pool4 and pool3 by these before score_pool4 / score_pool3
AT_ONCE_SKIP_SCALES = (0.01, 0.0001)


def from_pytorch_fcn(cls: type[ModelT], checkpoint: StateDictSource, at_once: bool = False, **kwargs: Any) -> ModelT:
    """``cls`` (FCN32s, FCN16s or FCN8s) built with the Caffe geometry and no BN, loaded from the
    Caffe-faithful PyTorch FCN port's state dict; ``at_once``: its FCN8sAtOnce (same keys)."""
    refuse_own_options("from_pytorch_fcn", kwargs, _FCN_OWN_OPTIONS)
    if at_once and cls.stride != 8:  # type: ignore[attr-defined]
        raise ValueError(f"at_once=True is pytorch-fcn's FCN8sAtOnce: use FCN8s.from_pytorch_fcn, not {cls.__name__}")
    if at_once:
        kwargs["skip_scales"] = AT_ONCE_SKIP_SCALES
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


def from_pytorch_semseg_fcn8s(cls: type[ModelT], checkpoint: StateDictSource, **kwargs: Any) -> ModelT:
    """``cls`` (FCN8s) built as :func:`from_pytorch_fcn` builds it, loaded from pytorch-semseg's
    ``fcn8s(learned_billinear=True)``: the same network under other layer names."""
    refuse_own_options("from_pytorch_semseg", kwargs, _FCN_OWN_OPTIONS)
    state = read_state_dict(checkpoint)
    for key in ("conv_block1.0.weight", "classifier.6.weight"):
        if key not in state:
            raise ValueError(f"not a pytorch-semseg fcn8s state dict: no {key!r} among {preview_keys(state)}")
    if "upscore8.weight" not in state or "score_pool3.weight" not in state:
        raise ValueError(
            "this pytorch-semseg FCN has no learned upsampling (upscore8) or no pool3 skip: its fcn32s, fcn16s "
            "and fcn8s(learned_billinear=False) upsample with nearest-neighbour F.upsample, which segzoo does not "
            "build; only fcn8s with learned_billinear=True (its default) converts"
        )
    unknown = unknown_layers(state, SEMSEG_FCN8S_KEYS)
    if unknown:
        raise ValueError(f"unexpected keys for the pytorch-semseg fcn8s layout: {preview_keys(unknown)}")
    model = cls(
        num_classes=state["classifier.6.weight"].shape[0],
        in_channels=state["conv_block1.0.weight"].shape[1],
        batch_norm=False,
        geometry="caffe",
        **kwargs,
    )
    load_renamed(model, state, SEMSEG_FCN8S_KEYS, "the pytorch-semseg fcn8s checkpoint")
    return model


def _semseg_fcn8s_key_map() -> dict[str, str]:
    """``conv_block1.0`` -> ``encoder.stages.0.0.conv`` (convs at even indices of each block, ReLUs
    between), ``classifier.0/3/6`` -> fc6, fc7, score_fr, ``upscore4`` -> upscore_pool4,
    ``upscore8`` -> upscore."""
    mapping = {
        f"conv_block{s + 1}.{2 * c}": f"encoder.stages.{s}.{c}.conv"
        for s, widths in enumerate(VGG16)
        for c in range(len(widths))
    }
    mapping.update({"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "score_fr"})
    mapping.update(score_pool4="score_pool4", score_pool3="score_pool3", upscore2="upscore2")
    mapping.update(upscore4="upscore_pool4", upscore8="upscore")
    return mapping


SEMSEG_FCN8S_KEYS = _semseg_fcn8s_key_map()


def from_pytorch_semseg_segnet(cls: type[ModelT], checkpoint: StateDictSource, **kwargs: Any) -> ModelT:
    """``cls`` (a SegNet) with floor pooling and BN + ReLU after the classifier, loaded from
    pytorch-semseg's ``segnet``."""
    refuse_own_options(
        "from_pytorch_semseg", kwargs, ("num_classes", "in_channels", "batch_norm", "ceil_mode", "classifier_bn_relu")
    )
    state = read_state_dict(checkpoint)
    first, last = "down1.conv1.cbr_unit.0.weight", "up1.conv2.cbr_unit.0.weight"
    for key in (first, last):
        if key not in state:
            raise ValueError(f"not a pytorch-semseg segnet state dict: no {key!r} among {preview_keys(state)}")
    unknown = unknown_layers(state, SEMSEG_SEGNET_KEYS)
    if unknown:
        raise ValueError(f"unexpected keys for the pytorch-semseg segnet layout: {preview_keys(unknown)}")
    model = cls(
        num_classes=state[last].shape[0],
        in_channels=state[first].shape[1],
        batch_norm=True,
        ceil_mode=False,
        classifier_bn_relu=True,
        **kwargs,
    )
    load_renamed(model, state, SEMSEG_SEGNET_KEYS, "the pytorch-semseg segnet checkpoint")
    return model


def _semseg_segnet_key_map() -> dict[str, str]:
    """``down1.conv1.cbr_unit.{0,1}`` -> ``encoder.stages.0.0.{conv,bn}`` ... and
    ``up5.conv1.cbr_unit.{0,1}`` -> ``decoder.0.0.{conv,bn}`` ...; the last block,
    ``up1.conv2``, -> ``classifier`` and ``classifier_bn``."""
    mapping = {}
    for s, widths in enumerate(VGG16):
        for c in range(len(widths)):
            mapping[f"down{s + 1}.conv{c + 1}.cbr_unit.0"] = f"encoder.stages.{s}.{c}.conv"
            mapping[f"down{s + 1}.conv{c + 1}.cbr_unit.1"] = f"encoder.stages.{s}.{c}.bn"
    # decoder stage d mirrors encoder stage len-1-d, which semseg calls up{len-d}
    stages = mirror(VGG16)
    for d, widths in enumerate(stages):
        for c in range(len(widths)):
            port = f"up{len(VGG16) - d}.conv{c + 1}.cbr_unit"
            last = d == len(stages) - 1 and c == len(widths) - 1
            mapping[f"{port}.0"] = "classifier" if last else f"decoder.{d}.{c}.conv"
            mapping[f"{port}.1"] = "classifier_bn" if last else f"decoder.{d}.{c}.bn"
    return mapping


SEMSEG_SEGNET_KEYS = _semseg_segnet_key_map()
