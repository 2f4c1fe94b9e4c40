"""What the ``segzoo`` commands share: argument types and the printing of a run's results and files."""

from __future__ import annotations

import argparse

from .training import RunResult


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def print_run(result: RunResult) -> None:
    """A finished run: its length, final loss, the best checkpoint's scores and the files written."""
    last = result.history[-1]
    print(f"{len(result.history)} epochs, {sum(r['seconds'] for r in result.history):.0f} s, final train loss {last['train_loss']:.4f}")
    print(f"validation scores of the best checkpoint ({result.out_dir / 'best.pt'}):")
    print(result.scores.table(result.class_names))
    print_files(result.files)


def print_files(files: dict) -> None:
    """One ``name: path`` line per written file."""
    for name, path in files.items():
        print(f"{name}: {path}")
