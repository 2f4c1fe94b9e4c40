"""``@pytest.mark.isolated``: run a test in a fresh Python process, so that a native crash (an abort
or segfault inside a bf16 or compiled kernel) fails that test instead of ending the whole run.

A child process costs seconds (importing torch and collecting the module), so the marked tests of one
module run together: when the first of them is reached, one child ``pytest`` runs it and the module's
other selected marked tests after it, and reports each test's outcome as it finishes. The parent
passes, skips or fails each test with its child's outcome. Should the child end before reporting
a test (a crash), that test fails with the child's exit status (the signal, for a crash) and output
tail, and the module's marked tests after it run in a new child: a crash fails only its own test.
Fixtures of the marked tests are still set up in the parent, so keep them cheap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_CHILD = "SEGZOO_ISOLATED_CHILD"
_REPORT = "SEGZOO_ISOLATED_REPORT"
_TIMEOUT_S = 900
_outcomes: dict[str, dict[str, str]] = {}
_crashes: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "isolated: run in a fresh process, so a native crash fails only this test")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In a child: append each phase's outcome to the report file as it ends."""
    path = os.environ.get(_REPORT)
    if not path or not os.environ.get(_CHILD):
        return
    text = report.longreprtext
    if report.skipped and isinstance(report.longrepr, tuple):
        text = report.longrepr[2].removeprefix("Skipped: ")
    elif report.failed:
        text = "\n".join([text, *(f"{title}\n{content}" for title, content in report.sections)])
    record = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "text": text}
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


def _read_outcomes(path: Path) -> dict[str, dict[str, str]]:
    """Each test whose teardown ended, with its first phase that did not pass (else its call)."""
    phases: dict[str, list[dict[str, str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        phases.setdefault(record["nodeid"], []).append(record)
    return {
        nodeid: next((r for r in records if r["outcome"] != "passed"), records[-1])
        for nodeid, records in phases.items() if records[-1]["when"] == "teardown"
    }  # fmt: skip


def _run_child(nodeids: list[str], rootpath: Path) -> tuple[str, dict[str, dict[str, str]]]:
    """Run ``nodeids`` in one child ``pytest``: how it ended (for a test it never reported) and the
    outcomes it reported."""
    with tempfile.TemporaryDirectory(prefix="segzoo-isolated-") as folder:
        report = Path(folder) / "outcomes.jsonl"
        report.touch()
        command = [sys.executable, "-m", "pytest", *nodeids, "-q", "-p", "no:cacheprovider", "-m", "slow or not slow"]
        try:
            child = subprocess.run(
                command, cwd=rootpath, env={**os.environ, _CHILD: "1", _REPORT: str(report)},
                capture_output=True, text=True, timeout=_TIMEOUT_S * len(nodeids),
            )  # fmt: skip
        except subprocess.TimeoutExpired as timeout:
            ending = f"(timed out after {timeout.timeout:.0f} s)"
        else:
            status = child.returncode
            cause = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
            ending = f"({cause}):\n{(child.stdout + child.stderr)[-4000:]}"
        return ending, _read_outcomes(report)


def _the_group(item: pytest.Function) -> list[str]:
    """This test and the marked tests after it in its module that no child has reported yet."""
    items = item.session.items
    return [
        other.nodeid for other in items[items.index(item):]
        if other.get_closest_marker("isolated") is not None and other.path == item.path and other.nodeid not in _outcomes
    ]  # fmt: skip


def _apply(outcome: dict[str, str], nodeid: str) -> None:
    if outcome["outcome"] == "skipped":
        pytest.skip(f"{nodeid}: {outcome['text']}")
    if outcome["outcome"] == "failed":
        pytest.fail(f"isolated run of {nodeid} failed in {outcome['when']}:\n{outcome['text'][-4000:]}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker("isolated") is None or os.environ.get(_CHILD):
        return None
    nodeid = pyfuncitem.nodeid
    if nodeid not in _outcomes and nodeid not in _crashes:
        group = _the_group(pyfuncitem)
        ending, outcomes = _run_child(group, pyfuncitem.config.rootpath)
        _outcomes.update(outcomes)
        unreported = [other for other in group if other not in outcomes]
        if unreported:  # the child ended inside the first of them; the rest go to a new child
            _crashes[unreported[0]] = ending
    if nodeid in _crashes:
        pytest.fail(f"isolated run of {nodeid} failed {_crashes.pop(nodeid)}", pytrace=False)
    _apply(_outcomes.pop(nodeid), nodeid)
    return True
