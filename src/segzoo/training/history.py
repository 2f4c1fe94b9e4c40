"""A run's per-epoch records: kept in the checkpoints, written beside them as JSON lines, and read
for early stopping."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..io.atomic import atomic_write

#: per-epoch records beside the checkpoints, one JSON object per line
HISTORY_FILE = "history.jsonl"


@dataclass
class History:
    """One dict per finished epoch: losses, validation scores, LR and seconds."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_mean_iou: float = -math.inf

    def stopped_early(self, patience: int | None) -> bool:
        """Whether ``patience`` epochs have passed since validation mIoU last improved (a tie is no
        improvement), read from the records alone, so a resumed run stops where an uninterrupted
        one would. Never without ``patience`` or validation scores."""
        scores = [record.get("mean_iou") for record in self.epochs]
        if patience is None or not scores or scores[-1] is None:
            return False
        best = max(range(len(scores)), key=lambda i: (scores[i] if scores[i] is not None else -math.inf, -i))
        return len(scores) - 1 - best >= patience


def write_history(records: list[dict[str, float]], path: str | os.PathLike) -> Path:
    """``records`` as JSON lines at ``path``, written atomically: the whole history of the run up
    to ``last.pt``'s epoch, so the file and the checkpoint always agree, even after a kill."""
    text = "".join(json.dumps(record) + "\n" for record in records)
    with atomic_write(path) as file:
        file.write(text.encode())
    return Path(path)
