"""torch.hub entry points (hubconf.py at the repository root)."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import torch

import segzoo

ROOT = Path(__file__).resolve().parents[1]


def test_entry_points_are_exactly_the_registered_models():
    """What torch.hub.list reports: hubconf's public callables."""
    spec = importlib.util.spec_from_file_location("hubconf_under_test", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    public = sorted(name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_"))
    assert public == segzoo.list_models()
    assert "pooling indices" in hubconf.segnet.__doc__


def test_hub_load_builds_every_model_with_kwargs():
    for name in segzoo.list_models():
        model = torch.hub.load(str(ROOT), name, source="local", num_classes=3, in_channels=1)
        assert type(model) is type(segzoo.get_model(name, num_classes=3))
        assert (model.num_classes, model.in_channels) == (3, 1)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 33, 35)).shape == (1, 3, 33, 35)


def test_hub_load_uses_the_checkouts_own_source(tmp_path):
    """As with a repository torch.hub downloaded: the package is imported from that checkout's src/."""
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "src", checkout / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copy(ROOT / "hubconf.py", checkout / "hubconf.py")
    code = (
        "import torch\n"
        f"model = torch.hub.load({str(checkout)!r}, 'segnet_basic', source='local', num_classes=2)\n"
        "import segzoo\n"
        "print(type(model).__name__, segzoo.__file__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True, timeout=300)
    name, location = out.stdout.split()
    assert name == "SegNetBasic" and location == str(checkout / "src" / "segzoo" / "__init__.py")
