"""segzoo.allocator: the segzoo command keeps glibc's large freed buffers, read off the process's
resident memory, and leaves the environment's own settings and in-process callers alone."""

import os
import platform
import subprocess
import sys

import pytest

import segzoo.cli
from segzoo.allocator import ENVIRONMENT

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt (Linux)"
)

#: allocate and free 256 MiB in 8 MiB buffers (each above glibc's default mmap threshold), then
#: print the resident MiB before, while held and after the free
_PROBE = """
import os, sys
from segzoo.allocator import keep_large_buffers
applied = keep_large_buffers() if sys.argv[1] == "apply" else None
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 2**20
before = rss()
buffers = [bytearray(8 << 20) for _ in range(32)]
held = rss()
del buffers
print(applied, round(before), round(held), round(rss()))
"""


def _probe(mode: str, **env: str) -> tuple[str, float, float, float]:
    clean = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=clean | env, capture_output=True, text=True, check=True).stdout
    applied, before, held, after = out.split()
    return applied, float(before), float(held), float(after)


def test_freed_large_buffers_stay_mapped_only_when_applied():
    applied, before, held, after = _probe("default")
    assert held - before > 200 and after - before < 50  # glibc's default: unmapped at free
    applied, before, held, after = _probe("apply")
    assert applied == "True" and held - before > 200 and after - before > 200  # kept for reuse


def test_the_environment_wins():
    applied, before, held, after = _probe("apply", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False" and after - before < 50


def test_only_the_program_applies_it(monkeypatch, capsys):
    """``segzoo`` / ``python -m segzoo`` (argv None) apply it; main([...]) from Python does not."""
    calls = []
    monkeypatch.setattr(segzoo.cli, "keep_large_buffers", lambda: calls.append(1) or True)
    assert segzoo.cli.main(["recipes"]) == 0
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["segzoo", "recipes"])
    assert segzoo.cli.main() == 0
    assert calls == [1]
