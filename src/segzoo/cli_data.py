"""The command line's mask options (``--palette``, ``--label-map``, ``--unknown-colours``): their
arguments and their translation into :class:`~segzoo.data.LabelMap` / :class:`~segzoo.data.ColourTable`."""

from __future__ import annotations

import argparse
from typing import Any

from .data import BUILT_IN_COLOUR_TABLES, BUILT_IN_LABEL_MAPS, ColourTable, LabelMap
from .data.colour_tables import UNKNOWN_COLOURS


def add_mask_arguments(command: argparse.ArgumentParser) -> None:
    """``--palette``, ``--label-map`` and ``--unknown-colours`` (folder layout)."""
    command.add_argument("--palette", metavar="NAME_OR_JSON",
                         help=f"RGB colour masks: a colour -> class table, built in ({', '.join(BUILT_IN_COLOUR_TABLES)}) "
                              "or a JSON file {\"classes\": [{\"name\": ..., \"color\": [r, g, b]}, ...], \"ignore\": [[r, g, b]]}")
    command.add_argument("--label-map", metavar="JSON_OR_NAME",
                         help="class-index masks: file value -> class, a JSON object such as '{\"0\": 0, \"255\": 1}' "
                              f"(\"ignore\" as a class ignores the value), a JSON file, or built in ({', '.join(BUILT_IN_LABEL_MAPS)})")
    command.add_argument("--unknown-colours", choices=UNKNOWN_COLOURS,
                         help="with --palette: a colour not in the table stops the run (error, default) or is ignored")


def mask_encoding(args: argparse.Namespace) -> dict[str, Any]:
    """``label_map`` and ``colour_table`` keyword arguments for :func:`~segzoo.data.open_splits`."""
    if args.unknown_colours is not None and args.palette is None:
        raise ValueError("--unknown-colours applies to colour masks: give --palette too")
    return {
        "label_map": LabelMap.parse(args.label_map) if args.label_map is not None else None,
        "colour_table": ColourTable.parse(args.palette, args.unknown_colours) if args.palette is not None else None,
    }
