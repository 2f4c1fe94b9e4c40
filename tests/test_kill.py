"""Kill safety: a training process killed outright (SIGKILL) at any moment leaves the last
complete checkpoint readable, resuming continues from it, and killed writers' leftovers go away."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import segzoo
from segzoo.io.atomic import atomic_write
from segzoo.io.checkpoint import load_checkpoint, save_atomic

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL (POSIX)")

# Loads _atomic.py on its own (it needs only the standard library), so the process starts in
# milliseconds, and dies by SIGKILL halfway through writing the target.
_KILLED_WRITER = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("_atomic", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with module.atomic_write(sys.argv[2]) as file:
    file.write(b"half")
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_writers_leftovers_are_removed_by_the_next_write(tmp_path):
    target = save_atomic({"version": 1}, tmp_path / "last.pt")
    leftovers = []
    for _ in range(2):
        killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, segzoo.io.atomic.__file__, str(target)])
        assert killed.returncode == -signal.SIGKILL
        leftovers.append(list(tmp_path.glob(".last.pt.*.tmp")))
        assert len(leftovers[-1]) == 1 and leftovers[-1][0].read_bytes() == b"half"
    assert leftovers[0] != leftovers[1], "the second writer removed the first one's leftover"
    assert torch.load(target, weights_only=True) == {"version": 1}, "the target is untouched"
    # near misses of the pattern: another target's temporary, other suffixes, not hex
    others = [".best.pt.0123abcd.tmp", ".last.pt.0123abcd.tmp.bak", "last.pt.0123abcd.tmp", ".last.pt.0123abcg.tmp"]
    for name in others:
        (tmp_path / name).write_bytes(b"not ours")
    save_atomic({"version": 2}, target)
    assert sorted(os.listdir(tmp_path)) == sorted(["last.pt", *others])
    assert torch.load(target, weights_only=True) == {"version": 2}


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    target = tmp_path / "last.pt"
    with atomic_write(target) as file:
        file.write(b"outer")
        save_atomic({"version": 2}, target)  # its cleanup runs while the outer writer is mid-write
        assert torch.load(target, weights_only=True) == {"version": 2}
    assert target.read_bytes() == b"outer", "the outer writer's file survived and replaced the target"


# Imports torch and segzoo once (seconds), then forks a trainer per line read from stdin (milliseconds):
# prints the trainer's pid, waits for it and prints its wait status. Each trainer resumes from
# last.pt when there is one and trains epochs of two 16x16 steps, writing last.pt after each.
_ZYGOTE = """
import os, signal, sys
signal.alarm(120)  # a stuck test must not leave this behind for long
import torch
import torch._dynamo  # what torch.optim imports on first use (seconds): once here, not in each trainer
from torch.utils.data import DataLoader, TensorDataset
import segzoo

torch.set_num_threads(1)
out = sys.argv[1]
last = os.path.join(out, "last.pt")


def train():
    signal.alarm(60)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 3, (4, 16, 16), generator=g))
    config = segzoo.TrainConfig(epochs=10**6)
    trainer = segzoo.Trainer(segzoo.SegNetBasic(3), DataLoader(data, batch_size=2), config=config, device="cpu", out_dir=out, progress=False)
    if os.path.exists(last):
        trainer.resume(last)
    trainer.fit()


for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            train()
        finally:
            os._exit(1)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


def _stamp(path):
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _wait_for_a_new_save(last, before, pid, timeout=60.0):
    deadline = time.monotonic() + timeout
    while _stamp(last) == before:
        os.kill(pid, 0)  # ProcessLookupError: the trainer died on its own
        assert time.monotonic() < deadline, f"no new {last.name} within {timeout} s"
        time.sleep(0.005)


def _trainer(epochs, out):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 3, (4, 16, 16), generator=g))
    config = segzoo.TrainConfig(epochs=epochs)
    return segzoo.Trainer(
        segzoo.SegNetBasic(3), DataLoader(data, batch_size=2), config=config, device="cpu", out_dir=out, progress=False
    )


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_last_checkpoint(tmp_path):
    script = tmp_path / "zygote.py"
    script.write_text(_ZYGOTE)
    out = tmp_path / "run"
    last = out / "last.pt"
    command = [sys.executable, str(script), str(out)]
    rng = random.Random(0)
    epochs, leftovers = [], []
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as zygote:
        try:
            for _ in range(15):
                zygote.stdin.write("run\n")
                zygote.stdin.flush()
                pid = int(zygote.stdout.readline())
                _wait_for_a_new_save(last, _stamp(last), pid)
                time.sleep(rng.uniform(0, 0.15))  # anywhere in the epoch: training, torch.save, fsync, rename
                os.kill(pid, signal.SIGKILL)
                status = int(zygote.stdout.readline())
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
                checkpoint = load_checkpoint(last)
                assert len(checkpoint["history"]) == checkpoint["epoch"]
                # each trainer saved at least once before its kill, so every kill finds a later epoch
                assert not epochs or checkpoint["epoch"] > epochs[-1], epochs
                epochs.append(checkpoint["epoch"])
                # at most this kill's leftover: each trainer's first save removed the earlier ones
                leftovers.append(len(list(out.glob(".last.pt.*.tmp"))))
                assert leftovers[-1] <= 1, leftovers
        finally:
            zygote.kill()  # idle between runs; after a failure, the trainer's own alarm ends it

    stored = epochs[-1]
    final = _trainer(stored + 2, out)
    final.resume(last)
    assert final.epoch == stored
    history = final.fit()
    assert [record["epoch"] for record in history] == list(range(1, stored + 3))
    assert load_checkpoint(last)["epoch"] == stored + 2
    assert sorted(os.listdir(out)) == ["history.jsonl", "last.pt"], "the last save removed every leftover"


# Trains with validation (so best.pt is written) and dies by SIGKILL in the middle of its second
# best.pt write: the temporary is created and locked, nothing is renamed.
_KILLED_DURING_BEST = """
import os, signal, sys
from pathlib import Path
signal.alarm(120)
import torch
from torch.utils.data import DataLoader, TensorDataset
import segzoo
from segzoo.io.atomic import atomic_write
import segzoo.training.trainer as trainer_module

torch.set_num_threads(1)
out, epochs, kill_at = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
g = torch.Generator().manual_seed(0)
x = torch.randn(8, 3, 16, 16, generator=g)
data = TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())
save, best_writes = trainer_module.save_checkpoint, []


def save_or_die(path, *args, **kwargs):
    if Path(path).name == "best.pt":
        best_writes.append(path)
        if len(best_writes) == kill_at:
            with atomic_write(path) as file:
                file.flush()
                os.kill(os.getpid(), signal.SIGKILL)
    return save(path, *args, **kwargs)


trainer_module.save_checkpoint = save_or_die
torch.manual_seed(0)
config = segzoo.TrainConfig(epochs=epochs, lr=0.05, seed=0)
trainer = segzoo.Trainer(
    segzoo.SegNetBasic(3), DataLoader(data, batch_size=4, shuffle=True), DataLoader(data, batch_size=8),
    config=config, device="cpu", out_dir=out, progress=False,
)
if (out / "last.pt").exists():
    trainer.resume(out / "last.pt")
trainer.fit()
"""


def _best_epoch(history):
    best, epoch = -float("inf"), None
    for record in history:
        if record["mean_iou"] > best:
            best, epoch = record["mean_iou"], record["epoch"]
    return epoch


def _assert_best_matches_last(out):
    """best.pt is the checkpoint of the best epoch that last.pt's history records."""
    last = load_checkpoint(out / "last.pt")
    best = load_checkpoint(out / "best.pt")
    assert best["epoch"] == _best_epoch(last["history"]), (best["epoch"], [r["mean_iou"] for r in last["history"]])
    assert last["best_mean_iou"] == best["history"][-1]["mean_iou"]


def test_sigkill_during_the_best_write_keeps_best_and_last_consistent(tmp_path):
    """A kill while best.pt is written must not leave a last.pt that already counts the new best:
    the resumed run would never write that best.pt again. The killed writer's temporary goes away."""
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_DURING_BEST)
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, str(script), str(out), "6", "2"], capture_output=True, text=True, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(list(out.glob(".best.pt.*.tmp"))) == 1, "the kill left the temporary of the best write"
    _assert_best_matches_last(out)

    resumed = subprocess.run([sys.executable, str(script), str(out), "6", "0"], capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(out / "last.pt")["epoch"] == 6
    _assert_best_matches_last(out)
    assert sorted(os.listdir(out)) == ["best.pt", "history.jsonl", "last.pt"], "every leftover was removed"
