"""Named training recipes: the settings of a paper's run, kept as data.

A recipe is a TOML file shipped in this package (``segzoo/recipes/<name>.toml``) holding a one-line
``description`` and any of the ``segzoo train`` options listed in :data:`FIELDS`, under the
options' names with underscores (``batch_size = 12`` for ``--batch-size 12``). Options a recipe
leaves out take ``segzoo train``'s defaults, and options given on the command line override the
recipe's: defaults < recipe < flags. ``segzoo recipes`` lists them, ``segzoo train --recipe NAME``
runs one (``--recipe FILE.toml`` reads any file in the same format, such as the resolved recipe
a run prints), and every run saves its resolved recipe in its checkpoints
(``RunDescription.recipe``).

Unknown names and unknown fields are a ``ValueError`` that lists the valid ones; values are
checked against the same choices the command line offers.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ..data.config import CLASS_WEIGHTINGS as DATA_CLASS_WEIGHTINGS
from ..data.layouts import LAYOUTS
from ..losses import format_loss_spec, parse_loss_spec
from ..models.registry import list_models
from ..models.segnet import DROPOUT_PLACEMENTS
from ..training.config import OPTIMIZERS, SCHEDULES
from ..training.precision import AMP_MODES

SUFFIX = ".toml"
CLASS_WEIGHTINGS = (*DATA_CLASS_WEIGHTINGS, "none")


def _choice(choices: Callable[[], tuple[str, ...] | list[str]]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        options = tuple(choices())
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"must be one of {list(options)}, got {value!r}")
        return value

    return check


def _integer(minimum: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            raise ValueError(f"must be an integer{f' >= {minimum}' if minimum is not None else ''}, got {value!r}")
        return value

    return check


def _number(low: float, high: float | None = None, low_open: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
        if not ok:
            bounds = f"{'>' if low_open else '>='} {low}" + (f" and < {high}" if high is not None else "")
            raise ValueError(f"must be a number {bounds}, got {value!r}")
        return float(value)

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _boolean_or_auto(value: Any) -> bool | str:
    if not isinstance(value, bool) and value != "auto":
        raise ValueError(f'must be true, false or "auto", got {value!r}')
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _loss_spec(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a loss spec string such as \"ce+dice\", got {value!r}")
    try:
        return format_loss_spec(parse_loss_spec(value))
    except ValueError as error:
        raise ValueError(f"is not a valid loss spec: {error}") from None


def _size(value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(f"must be [height, width] with positive integers, got {value!r}")
    return (value[0], value[1])


def _scale_range(value: Any) -> tuple[float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not 0 < value[0] <= value[1]
    ):
        raise ValueError(f"must be [low, high] with 0 < low <= high, got {value!r}")
    return (float(value[0]), float(value[1]))


#: every field a recipe may set: the ``segzoo train`` option of the same name, with its check
FIELDS: dict[str, Callable[[Any], Any]] = {
    "model": _choice(list_models),
    "layout": _choice(lambda: LAYOUTS),
    "num_classes": _integer(1),
    "ignore_index": _integer(),
    "weights_backbone": _text,  # DEFAULT, IMAGENET1K_V1, a file, or "none"
    "dropout": _choice(lambda: DROPOUT_PLACEMENTS),
    "batch_norm": _boolean,
    "fixed_upsampling": _boolean,
    "epochs": _integer(1),
    "batch_size": _integer(1),
    "lr": _number(0.0, low_open=True),
    "optimizer": _choice(lambda: OPTIMIZERS),
    "momentum": _number(0.0, 1.0),
    "schedule": _choice(lambda: SCHEDULES),
    "weight_decay": _number(0.0),
    "crop": _size,
    "train_scale": _scale_range,
    "eval_size": _size,
    "class_weights": _choice(lambda: CLASS_WEIGHTINGS),
    "loss": _loss_spec,
    "label_smoothing": _number(0.0, 1.0),
    "freeze_encoder": _boolean,
    "encoder_lr_scale": _number(0.0),
    "amp": _choice(lambda: AMP_MODES),
    "accumulate": _integer(1),
    "seed": _integer(),
    "deterministic": _boolean,
    "cache": _boolean,
    "channels_last": _boolean_or_auto,
    "patience": _integer(1),
    "val_every": _integer(1),
}


@dataclass(frozen=True)
class Recipe:
    """A named set of ``segzoo train`` options (see :data:`FIELDS`), checked when built.

    ``options`` holds only what the recipe sets; ``None`` values mean "not set" and are dropped.
    ``source`` says where the values come from, in error messages.
    """

    name: str | None
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = "recipe"

    def __post_init__(self) -> None:
        label = self.source
        if not isinstance(self.description, str) or "\n" in self.description:
            raise ValueError(f"{label}: description must be a one-line string, got {self.description!r}")
        unknown = sorted(set(self.options) - set(FIELDS))
        if unknown:
            raise ValueError(f"{label}: unknown field(s) {unknown}; valid fields: description, {', '.join(FIELDS)}")
        checked = {}
        for key, value in self.options.items():
            if value is None:
                continue
            try:
                checked[key] = FIELDS[key](value)
            except ValueError as error:
                raise ValueError(f"{label}: {key} {error}") from None
        object.__setattr__(self, "options", {key: checked[key] for key in FIELDS if key in checked})

    def merged(self, overrides: Mapping[str, Any], source: str = "options") -> Recipe:
        """This recipe with ``overrides`` (checked the same way; ``source`` names them in errors)
        replacing its values."""
        return Recipe(self.name, self.description, {**self.options, **overrides}, source)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for pairs), as checkpoints store them."""
        return {
            "name": self.name,
            "description": self.description,
            "options": {key: list(value) if isinstance(value, tuple) else value for key, value in self.options.items()},
        }

    def to_toml(self, comment: str | None = None) -> str:
        """The recipe as a TOML file that :func:`load_recipe` reads back to the same options."""
        lines = [f"# {line}" for line in (comment or "").splitlines()]
        lines.append(f"description = {_toml_value(self.description)}")
        for key in FIELDS:
            if key in self.options:
                lines.append(f"{key} = {_toml_value(self.options[key])}")
            else:
                lines.append(f"# {key}: not set")
        return "\n".join(lines) + "\n"


def recipe_names() -> list[str]:
    """Names of the recipes shipped with segzoo, sorted."""
    return sorted(entry.name[: -len(SUFFIX)] for entry in resources.files(__name__).iterdir() if entry.name.endswith(SUFFIX))


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, by name."""
    return [load_recipe(name) for name in recipe_names()]


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """A shipped recipe by name (``"camvid-segnet-basic"``), or any recipe file (a path ending in
    ``.toml``); an unknown name is a ``ValueError`` listing the shipped ones."""
    text_name = os.fspath(name_or_path)
    if text_name.endswith(SUFFIX) or os.sep in text_name:
        path = Path(text_name)
        if not path.is_file():
            raise FileNotFoundError(f"recipe file {path} not found")
        return parse_recipe(path.read_text(encoding="utf-8"), path.stem, f"recipe file {path}")
    names = recipe_names()
    if text_name not in names:
        raise ValueError(f"unknown recipe {text_name!r}; choices: {', '.join(names)} (or a .toml file)")
    resource = resources.files(__name__) / f"{text_name}{SUFFIX}"
    return parse_recipe(resource.read_text(encoding="utf-8"), text_name, f"recipe {text_name} (segzoo/recipes/{text_name}{SUFFIX})")


def parse_recipe(text: str, name: str | None, source: str = "recipe") -> Recipe:
    """A recipe from TOML ``text``: a ``description`` and fields of :data:`FIELDS`."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source} is not valid TOML: {error}") from None
    description = values.pop("description", None)
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"{source} needs a one-line description = \"...\"")
    return Recipe(name, description.strip(), values, source)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: the same escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")
