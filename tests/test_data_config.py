"""DataConfig, a run's data settings: plain values that survive a weights-only checkpoint, and
early errors for settings no run could use."""

import pytest
import torch

from segzoo.data import DataConfig

SETTINGS = DataConfig(batch_size=4, crop_size=(32, 48), train_scale=(0.75, 1.5), eval_size=(64, 80), class_weights="median")


def test_to_dict_is_plain_values_and_from_dict_rebuilds_it():
    values = SETTINGS.to_dict()
    assert values == {
        "batch_size": 4,
        "crop_size": (32, 48),
        "train_scale": (0.75, 1.5),
        "eval_size": (64, 80),
        "class_weights": "median",
        "cache": False,
    }
    assert DataConfig.from_dict(values) == SETTINGS
    assert DataConfig.from_dict({}) == DataConfig() == DataConfig.from_dict(DataConfig().to_dict())


def test_round_trip_through_a_weights_only_torch_file(tmp_path):
    torch.save({"data": SETTINGS.to_dict()}, tmp_path / "settings.pt")
    loaded = torch.load(tmp_path / "settings.pt", weights_only=True)["data"]
    assert DataConfig.from_dict(loaded) == SETTINGS


def test_lists_become_tuples_as_json_would_give_them():
    """Sizes and scales read back from JSON or YAML arrive as lists; the settings hold tuples."""
    settings = DataConfig.from_dict({"crop_size": [32, 48], "train_scale": [1, 2], "eval_size": [64, 80]})
    assert (settings.crop_size, settings.train_scale, settings.eval_size) == ((32, 48), (1.0, 2.0), (64, 80))
    assert settings == DataConfig(crop_size=(32, 48), train_scale=(1.0, 2.0), eval_size=(64, 80))
    assert DataConfig(crop_size=[8, 9]).crop_size == (8, 9)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive int"),
        ({"batch_size": True}, "batch_size must be a positive int"),
        ({"crop_size": (0, 8)}, r"crop_size must be \(height, width\) with positive ints, got \(0, 8\)"),
        ({"crop_size": 64}, "crop_size must be"),
        ({"crop_size": (64,)}, "crop_size must be"),
        ({"crop_size": (64.0, 64)}, "crop_size must be"),
        ({"eval_size": (360, 480, 3)}, "eval_size must be"),
        ({"eval_size": (True, 8)}, "eval_size must be"),
        ({"train_scale": (2.0, 0.5)}, r"train_scale must be \(low, high\) with 0 < low <= high"),
        ({"train_scale": (0.0, 1.0)}, "train_scale must be"),
        ({"train_scale": 1.0}, "train_scale must be"),
        ({"class_weights": "inverse"}, r"class_weights must be None or one of \('median', 'sqrt-median'\), got 'inverse'"),
    ],
)
def test_unusable_settings_are_refused(settings, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**settings)
    with pytest.raises(ValueError, match=match):
        DataConfig.from_dict(settings)


def test_unknown_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown data settings \['crop', 'workers'\]; known: \['batch_size', "):
        DataConfig.from_dict({"crop": (8, 8), "workers": 2, "batch_size": 2})
