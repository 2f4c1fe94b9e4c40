"""The sdist and wheel build, carry the typed package, and import once installed."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import segzoo

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sdist_and_wheel_install_and_import(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"),
    )
    dist = tmp_path / "dist"
    # --no-isolation: build with this environment's setuptools (a dev extra), no download needed
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)], check=True,
                   capture_output=True, timeout=600)
    (wheel,) = dist.glob("segzoo-*.whl")
    (sdist,) = dist.glob("segzoo-*.tar.gz")
    assert wheel.name.startswith(f"segzoo-{segzoo.__version__}-") and sdist.name == f"segzoo-{segzoo.__version__}.tar.gz"

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"segzoo-{segzoo.__version__}.dist-info/METADATA").decode()
    assert {"segzoo/__init__.py", "segzoo/py.typed", "segzoo/models/segnet.py", "segzoo/models/fcn.py"} <= names
    assert not any(name.startswith("tests/") for name in names)
    requirements = re.findall(r"^Requires-Dist: (\S+)", metadata, flags=re.M)
    assert {r.split(">=")[0] for r in requirements if "extra" not in r} >= {"torch", "torchvision", "numpy"}
    assert not any("==" in r for r in requirements), "requirements must be lower bounds, not pins"

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    code = "import segzoo, torch; m = segzoo.SegNetBasic(3).eval(); print(segzoo.__file__, m(torch.randn(1, 3, 20, 30)).shape)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=300).stdout
    assert out.startswith(str(target)) and "torch.Size([1, 3, 20, 30])" in out
