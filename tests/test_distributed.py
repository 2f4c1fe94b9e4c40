"""Data-parallel training on torch.distributed: sharding, the trainer inside a process group, and
``segzoo train`` under ``torchrun`` with two gloo processes on the CPU.

Run as a script (``torchrun ... tests/test_distributed.py OUT DUMPS TRAIN-ARGS...``), this file is
the per-process worker of the torchrun test.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import segzoo
import segzoo.cli
import segzoo.cli_train
import segzoo.losses
from segzoo.data import SegmentationFolder, eval_transforms
from segzoo.training import TrainConfig, Trainer, distributed, evaluate, make_loader
from segzoo.training.distributed import ShardSampler, process_group

IGNORE = 255
LR = 0.01


@pytest.mark.parametrize(("length", "replicas"), [(5, 2), (7, 3), (2, 4)])
def test_shards_cover_every_item_exactly_once(length, replicas):
    shards = [list(ShardSampler(range(length), replicas, rank)) for rank in range(replicas)]
    assert sorted(i for shard in shards for i in shard) == list(range(length))
    assert [len(ShardSampler(range(length), replicas, rank)) for rank in range(replicas)] == [len(s) for s in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_sampler_rejects_a_rank_outside_the_group():
    with pytest.raises(ValueError, match="0 <= rank < num_replicas"):
        ShardSampler(range(4), num_replicas=2, rank=2)


def test_without_a_process_group_everything_is_one_process():
    assert not distributed.is_active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.all_reduce_sum([1.5, 2.0], torch.device("cpu")) == [1.5, 2.0]
    assert distributed.setup("cpu") == torch.device("cpu")
    assert not distributed.is_active(), "no torchrun variables: setup must not start a group"


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo group of one process, as ``torchrun --nproc_per_node 1`` would make."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_trainer_wraps_in_ddp_but_saves_the_plain_model(one_process_group, tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(4, 3, 16, 16), torch.randint(0, 2, (4, 16, 16)))
    loader = make_loader(data, 2, shuffle=True, distributed=True)
    assert isinstance(loader.sampler, DistributedSampler)
    config = TrainConfig(epochs=1, freeze_encoder=True)  # DDP must be built after freezing, or it waits for encoder gradients
    trainer = Trainer(segzoo.SegNetBasic(2), loader, config=config, device="cpu", out_dir=tmp_path, progress=False)
    assert isinstance(trainer._network, DistributedDataParallel) and trainer._network.module is trainer.model
    trainer.fit()
    keys = segzoo.io.checkpoint.load_checkpoint(tmp_path / "last.pt")["state_dict"].keys()
    assert keys == trainer.model.state_dict().keys() and not any(key.startswith("module.") for key in keys)


def test_sharded_evaluation_sums_each_loss_term_over_processes(one_process_group):
    """Through the process group's all-reduce, each term of ce+dice keeps its own sum and weight."""
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3).eval()
    data = TensorDataset(torch.randn(5, 3, 16, 16), torch.randint(0, 3, (5, 16, 16)))
    criterion = segzoo.losses.get_loss("ce+dice")
    sharded, _ = evaluate(model, make_loader(data, 2, shuffle=False, distributed=True), criterion=criterion)
    plain, _ = evaluate(model, DataLoader(data, batch_size=2), criterion=criterion)
    assert sharded == pytest.approx(plain, rel=1e-12)


def test_sync_batchnorm_on_cpu_is_refused_early(one_process_group):
    """torch's SyncBatchNorm raises for CPU tensors in training; the trainer says so before starting."""
    data = TensorDataset(torch.randn(4, 3, 16, 16), torch.randint(0, 2, (4, 16, 16)))
    with pytest.raises(ValueError, match="sync_batchnorm needs CUDA"):
        Trainer(segzoo.SegNetBasic(2), make_loader(data, 2, shuffle=True, distributed=True), config=TrainConfig(sync_batchnorm=True), device="cpu")


# ---- process_group: joining torchrun's group for a block, and leaving it ----


@pytest.fixture
def torchrun_environment(monkeypatch) -> None:
    """The variables ``torchrun --nproc_per_node 1`` sets, with a free port for the rendezvous."""
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(name, value)


def test_process_group_without_torchrun_only_resolves_the_device(monkeypatch):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with process_group("cpu") as device:
        assert device == torch.device("cpu")
        assert not dist.is_initialized()
    assert not dist.is_initialized()


def test_process_group_under_torchrun_joins_a_gloo_group_and_destroys_it(torchrun_environment):
    with process_group("cpu") as device:
        assert device == torch.device("cpu")
        assert dist.is_initialized() and dist.get_backend() == "gloo"
        assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert not dist.is_initialized()


def test_process_group_destroys_its_group_on_an_exception(torchrun_environment):
    with pytest.raises(KeyError, match="stop"):
        with process_group("cpu"):
            assert dist.is_initialized()
            raise KeyError("stop")
    assert not dist.is_initialized()


def test_process_group_leaves_an_active_group_alone(one_process_group, torchrun_environment):
    group = dist.group.WORLD
    with process_group("cpu") as device:
        assert device == torch.device("cpu") and dist.group.WORLD is group
    assert dist.is_initialized() and dist.group.WORLD is group, "a group the block did not create outlives it"


def _train_args(data: Path, out: Path, epochs: int) -> list[str]:
    return [
        "train", "--model", "segnet_basic", "--data", str(data), "--num-classes", "3", "--ignore-index", str(IGNORE),
        "--epochs", str(epochs), "--batch-size", "2", "--lr", str(LR), "--out", str(out), "--no-progress",
        "--amp", "off", "--no-channels-last",  # fp32 NCHW: the history is compared with a fresh fp32 evaluation
    ]  # fmt: skip


def _val_set(data: Path, model: segzoo.SegmentationModel) -> SegmentationFolder:
    return SegmentationFolder(data / "val" / "images", data / "val" / "masks", 3, IGNORE, transforms=eval_transforms(model.mean, model.std))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_segzoo_train_under_torchrun_with_two_processes(tmp_path, make_folder_dataset):
    """One ``segzoo train`` under torchrun (2 gloo processes): equal weights on both ranks, rank 0
    alone writes, sharded evaluation equals a single-process one, and one process resumes. 8
    training images (2 steps of 2 per process and epoch with 2 processes), 5 validation images
    (uneven shards)."""
    data, out, dumps = make_folder_dataset(train=8, val=5, size=(16, 24)), tmp_path / "run", tmp_path / "dumps"
    dumps.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in distributed.TORCHRUN_VARIABLES} | {"OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
        __file__, str(out), str(dumps), *_train_args(data, out, epochs=2),
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("validation scores of the best checkpoint") == 1, "only rank 0 prints"

    ranks = [torch.load(dumps / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][key]), key  # BatchNorm buffers included

    written = [json.loads((dumps / f"rank{r}_writes.json").read_text()) for r in (0, 1)]
    assert {"last.pt", "best.pt", "predictions.png"} <= set(written[0]), written[0]  # the audit sees writes
    assert written[1] == [], f"rank 1 wrote {written[1]}"

    checkpoint = segzoo.io.checkpoint.load_checkpoint(out / "last.pt")
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(value, ranks[0]["state_dict"][key]), key
    model = segzoo.load(out / "last.pt")
    loss, scores = evaluate(model, DataLoader(_val_set(data, model), batch_size=5), IGNORE)
    for rank in ranks:
        assert torch.equal(rank["confusion"], scores.confusion)
        assert rank["loss"] == pytest.approx(loss, rel=1e-6)
    history = checkpoint["history"]
    assert history[-1]["mean_iou"] == scores.mean_iou and history[-1]["val_loss"] == pytest.approx(loss, rel=1e-6)

    # one process: 4 steps per epoch instead of 2, so the schedule must continue from the epoch
    assert segzoo.cli.main([*_train_args(data, out, epochs=4), "--resume"]) == 0
    resumed = segzoo.io.checkpoint.load_checkpoint(out / "last.pt")["history"]
    assert resumed[:2] == history and [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    assert resumed[2]["lr"] == pytest.approx(LR * (1 - 12 / 16) ** 0.9)  # poly after 2 * 4 + 4 of 4 * 4 steps
    assert resumed[3]["lr"] == pytest.approx(0.0, abs=1e-12)


def _worker(out: Path, dumps: Path, train_args: list[str]) -> None:
    """One torchrun process: run ``segzoo train``, then dump this rank's weights, a sharded
    evaluation of them, and the files under ``out`` it opened for writing or renamed into place."""
    writes: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, os.PathLike)):
            mode, flags = args[1], args[2]
            writing = any(c in mode for c in "wxa+") if mode else flags & (os.O_WRONLY | os.O_RDWR)
            target = Path(os.fsdecode(args[0])) if writing else None
        elif event in ("os.rename", "os.replace"):
            target = Path(os.fsdecode(args[1]))
        else:
            return
        if target is not None and target.resolve().is_relative_to(out.resolve()):
            writes.append(target.name)

    models = []
    build = segzoo.cli_train.get_model
    segzoo.cli_train.get_model = lambda *a, **k: models.append(build(*a, **k)) or models[-1]
    distributed.setup()  # join torchrun's group first: `segzoo train` then leaves it up for the checks below
    sys.addaudithook(audit)
    if segzoo.cli.main(train_args) != 0:
        sys.exit(1)
    rank, model = distributed.rank(), models[0]
    data = Path(train_args[train_args.index("--data") + 1])
    loss, scores = evaluate(model, make_loader(_val_set(data, model), 2, shuffle=False, distributed=True), IGNORE)
    torch.save({"state_dict": model.state_dict(), "confusion": scores.confusion, "loss": loss}, dumps / f"rank{rank}.pt")
    (dumps / f"rank{rank}_writes.json").write_text(json.dumps(sorted(set(writes))))
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
