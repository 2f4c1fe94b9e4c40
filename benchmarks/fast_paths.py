"""segzoo's inference fast paths side by side with a plain fp32 eager reference, against the machine's peak.

    python benchmarks/fast_paths.py                                   # SegNet, SegNet-Basic, FCN-8s; 360x480; batch 1 and 8
    python benchmarks/fast_paths.py --models segnet_basic --batches 1 --size 90 120 --reps 1   # smoke run, seconds (+ compiles)
    python benchmarks/fast_paths.py --checkpoint run/best.pt --data CAMVID --layout camvid      # + accuracy of every path

Variants: ``reference`` (benchmarks/models.py's plain eager port: conv, separate BN, NCHW, fp32),
``fused`` (:func:`segzoo.fuse_for_inference`, eager), ``optimize fp32`` / ``optimize bf16`` /
``optimize int8`` (:func:`segzoo.optimize`; bf16 only where native, int8 needs torchao), ``optimize fp32 eager`` /
``optimize bf16 eager`` (``segzoo.optimize(model, dtype, compiled=False)``: the fused model with prepacked
convolutions, bf16 under autocast), ``optimize int8 eager`` (the SegNet family only:
:mod:`segzoo.inference.eager_int8`) and ``onnxruntime``
(:func:`segzoo.export_onnx`, CPU provider). Every variant's repetitions alternate with the reference's in
the same loop, so both see the same machine load; the table gives medians. Peaks are measured on the same
threads: fp32 and bf16 matmul (4096) and a 256-channel 3x3 conv (56x56, batch 8), and that conv in
eager int8 (uint8 to uint8, :class:`~segzoo.inference.eager_int8.QuantizedConv2d`); each variant's TFLOP/s
(the model's FLOPs from ``FlopCounterMode`` over its median time; int8: TOP/s) is given as a fraction of
the conv peak of its dtype. Memory: peak bytes of the tensors a forward creates (eager
variants; compiled graphs and onnxruntime allocate outside PyTorch's dispatcher, so they show "-").
With ``--checkpoint``/``--data``, every path scores the validation split: mIoU difference from the fp32
eager model (bound: 0.3 points) and pixel argmax agreement with it (bound: 99.5 %); int8 is then
calibrated on the first 8 training images (without a checkpoint, on random ones: timing only).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parent))
from models import MiB, forward_flops, peak_forward_bytes, reference  # noqa: E402

import segzoo  # noqa: E402
from segzoo.inference.calibration import CALIBRATION_IMAGES, spread  # noqa: E402
from segzoo.inference.eager_int8 import QuantizedConv2d, eager_int8_available, eager_int8_supported  # noqa: E402
from segzoo.inference.optimize import native_bf16  # noqa: E402
from segzoo.metrics import upsample_logits  # noqa: E402

MODELS = ("segnet", "segnet_basic", "fcn8s")
VARIANTS = ("reference", "fused", "optimize fp32", "optimize fp32 eager", "optimize bf16", "optimize bf16 eager", "optimize int8",
            "optimize int8 eager", "onnxruntime")


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measured_peaks(reps: int) -> dict[str, float]:
    """TFLOP/s of a 4096 matmul and a 256-channel 3x3 conv (batch 8, 56x56), fp32 and bf16, and
    TOP/s of the conv in eager int8."""
    peaks = {}
    a = torch.randn(4096, 4096)
    x = torch.randn(8, 256, 56, 56).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last).eval()
    conv_flops = 2 * 8 * 56 * 56 * 256 * 256 * 9
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dtype == torch.bfloat16 and not native_bf16("cpu"):
            continue
        m, xc, c = a.to(dtype), x.to(dtype), conv.to(dtype)
        with torch.no_grad():
            for _ in range(2):
                m @ m, c(xc)
            peaks[f"matmul {name}"] = 2 * 4096**3 / min(seconds(lambda: m @ m) for _ in range(reps + 2)) / 1e12
            peaks[f"conv {name}"] = conv_flops / min(seconds(lambda: c(xc)) for _ in range(reps + 2)) / 1e12
    if eager_int8_available():
        qconv, xq = QuantizedConv2d(conv.float(), False, (0.02, 0), (0.05, 0)), torch.randint(0, 256, x.shape, dtype=torch.uint8)
        xq = xq.contiguous(memory_format=torch.channels_last)
        for _ in range(2):
            qconv(xq)
        peaks["conv int8"] = conv_flops / min(seconds(lambda: qconv(xq)) for _ in range(reps + 2)) / 1e12
    return peaks


def build_variants(
    name: str, model: segzoo.SegmentationModel, batch: int, size: tuple[int, int], wanted: list[str], calibration: list[Tensor]
) -> dict[str, Callable]:
    """Each wanted variant as a callable on a float32 NCHW batch; compiled ones are warmed (compiled) here.
    ``calibration``: int8's calibration batches."""
    x = torch.randn(batch, 3, *size)
    out: dict[str, Callable] = {}
    for variant in wanted:
        if variant == "reference":
            out[variant] = reference(name, model.num_classes).eval()  # its own random weights: timed, not scored
        elif variant == "fused":
            out[variant] = segzoo.fuse_for_inference(model)
        elif variant.startswith("optimize"):
            dtype, compiled = variant.split()[1], not variant.endswith("eager")
            if (dtype == "bf16" and not native_bf16("cpu")) or (dtype == "int8" and not compiled and not eager_int8_supported(model)):
                continue
            out[variant] = segzoo.optimize(model, dtype, calibration=calibration if dtype == "int8" else None, compiled=compiled)
        elif variant == "onnxruntime":
            import onnxruntime

            path = Path(tempfile.mkdtemp()) / f"{name}.onnx"
            session = onnxruntime.InferenceSession(str(segzoo.export_onnx(model, path, size)), providers=["CPUExecutionProvider"])
            out[variant] = lambda images, s=session: torch.from_numpy(s.run(["logits"], {"images": images.numpy()})[0])
    with torch.no_grad():
        for run in out.values():
            run(x)  # compiles the compiled variants at this size
    return out


def time_side_by_side(variants: dict[str, Callable], x: Tensor, reps: int) -> dict[str, float]:
    """Median seconds per variant; each repetition runs the reference, then every other variant."""
    times: dict[str, list[float]] = {v: [] for v in variants}
    with torch.no_grad():
        for _ in range(reps):
            for variant, run in variants.items():
                times[variant].append(seconds(lambda r=run: r(x)))
    return {v: statistics.median(t) for v, t in times.items()}


def checkpoint_split(data: str, layout: str, split: str):
    """A split of the checkpoint's dataset with its evaluation transforms: images as the model sees them."""
    from segzoo.data import eval_transforms, open_split
    from segzoo.io.checkpoint import load_run

    _, run = load_run(ARGS.checkpoint)
    dataset = open_split(data, layout, split, len(run.class_names), run.ignore_index)
    dataset.transforms = eval_transforms(run.mean, run.std, run.data.eval_size)
    return dataset


def training_images(data: str, layout: str, count: int) -> list[Tensor]:
    """``count`` training images from across the split (all, if there are fewer): int8's calibration
    on real data (never the validation split it is scored on), as ``segzoo evaluate`` picks them."""
    dataset = checkpoint_split(data, layout, "train")
    return [image[None] for image, _ in spread(dataset, count)]


def accuracy(model: segzoo.SegmentationModel, variants: dict[str, Callable], data: str, layout: str) -> dict[str, tuple[float, float]]:
    """Per variant: (mIoU - fp32 eager mIoU in points, argmax agreement with fp32 eager) on the val split."""
    dataset = checkpoint_split(data, layout, "val")
    ignore = dataset.ignore_index
    confusion = {v: torch.zeros(model.num_classes, model.num_classes, dtype=torch.long) for v in ["eager", *variants]}
    agree = {v: [0, 0] for v in variants}
    with torch.no_grad():
        for i in range(len(dataset)):
            image, mask = dataset[i]
            # scored against the label at its own resolution, as segzoo evaluate does
            labels = {v: upsample_logits(run(image[None]), mask.shape).argmax(1)[0] for v, run in {"eager": model, **variants}.items()}
            keep = mask != ignore if ignore is not None else torch.ones_like(mask, dtype=torch.bool)
            for v, lab in labels.items():
                confusion[v] += torch.bincount(mask[keep] * model.num_classes + lab[keep], minlength=model.num_classes**2).view_as(confusion[v])
                if v != "eager":
                    agree[v][0] += int((lab == labels["eager"]).sum())
                    agree[v][1] += lab.numel()

    def miou(c: Tensor) -> float:
        union = c.sum(0) + c.sum(1) - c.diag()
        present = union > 0
        return float((c.diag()[present] / union[present]).mean()) * 100

    base = miou(confusion["eager"])
    return {v: (miou(confusion[v]) - base, agree[v][0] / agree[v][1]) for v in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, help=f"default: {' '.join(MODELS)}; with --checkpoint, its model")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per variant (alternating; default: %(default)s)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--checkpoint", help="a trained segzoo checkpoint: also report each path's val mIoU and agreement")
    parser.add_argument("--data", help="the checkpoint's dataset root (with --checkpoint)")
    parser.add_argument("--layout", default="camvid")
    global ARGS
    ARGS = args = parser.parse_args()
    if args.checkpoint:
        from segzoo.io.checkpoint import load_checkpoint

        trained = load_checkpoint(args.checkpoint)["model"]["name"]
        if trained not in MODELS or args.models not in (None, [trained]):
            parser.error(f"--checkpoint holds {trained}: time it alone (--models {trained}, or leave --models out); the references are {MODELS}")
        args.models = [trained]
    args.models = args.models or list(MODELS)
    if "reference" not in args.variants:
        args.variants.insert(0, "reference")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "unknown CPU")
    peaks = measured_peaks(args.reps)
    print(f"torch {torch.__version__}, {cpu}, {torch.get_num_threads()} threads; measured peaks (TFLOP/s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in peaks.items()))  # fmt: skip
    print("| model | batch | variant | ms | vs reference | TFLOP/s | % of peak | peak MiB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        torch.manual_seed(0)
        model = segzoo.get_model(name, num_classes=args.num_classes).eval()
        calibration = [torch.randn(1, 3, *args.size) for _ in range(2)]  # timing only: the values do not matter
        if args.checkpoint:
            model = segzoo.load(args.checkpoint).eval()
            if args.data:
                calibration = training_images(args.data, args.layout, CALIBRATION_IMAGES)
        for batch in args.batches:
            variants = build_variants(name, model, batch, tuple(args.size), args.variants, calibration)
            x = torch.randn(batch, 3, *args.size)
            flops = forward_flops(model, x)
            times = time_side_by_side(variants, x, args.reps)
            for variant, secs in times.items():
                tflops = flops / secs / 1e12
                peak = peaks.get(next((f"conv {dtype}" for dtype in ("bf16", "int8") if dtype in variant), "conv fp32"))
                mib = f"{peak_forward_bytes(variants[variant], x) / MiB:.0f}" if variant in ("reference", "fused") else "-"
                share = f"{100 * tflops / peak:.0f}%" if peak else "-"
                print(f"| {name} | {batch} | {variant} | {1e3 * secs:.1f} | {secs / times['reference']:.2f}x | {tflops:.3g} | {share} | {mib} |", flush=True)
            if args.checkpoint and args.data and batch == args.batches[0]:
                for variant, (delta, agreement) in accuracy(model, {v: r for v, r in variants.items() if v != "reference"}, args.data, args.layout).items():
                    ok = abs(delta) <= 0.3 and agreement >= 0.995
                    print(f"| {name} | val | {variant} | ΔmIoU {delta:+.2f} points | agreement {100 * agreement:.2f}% | {'within' if ok else 'OUTSIDE'} bounds | | |")


if __name__ == "__main__":
    main()
