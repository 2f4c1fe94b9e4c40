"""``@pytest.mark.isolated``: run a test in a fresh Python process, so that a native crash (an abort
or segfault inside a bf16 or compiled kernel) fails that test instead of ending the whole run.

The marked test is re-run by a child ``pytest`` on its node id; the parent passes it when the child
passes and fails it with the child's exit status (the signal, for a crash) and output tail otherwise.
Fixtures of the marked test are still set up in the parent, so keep them cheap.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

_CHILD = "SEGZOO_ISOLATED_CHILD"
_TIMEOUT_S = 900


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "isolated: run in a fresh process, so a native crash fails only this test")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker("isolated") is None or os.environ.get(_CHILD):
        return None
    command = [sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q", "-p", "no:cacheprovider", "-m", "slow or not slow"]
    child = subprocess.run(
        command, cwd=pyfuncitem.config.rootpath, env={**os.environ, _CHILD: "1"},
        capture_output=True, text=True, timeout=_TIMEOUT_S,
    )  # fmt: skip
    if child.returncode != 0:
        status = child.returncode
        cause = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        tail = (child.stdout + child.stderr)[-4000:]
        pytest.fail(f"isolated run of {pyfuncitem.nodeid} failed ({cause}):\n{tail}", pytrace=False)
    return True
