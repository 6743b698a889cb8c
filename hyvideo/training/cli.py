"""Command-line entry of the trainers: a bad config, manifest, checkpoint or weight file is one message on
stderr (rank 0 only) and exit status 2, never a traceback per rank."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from hyvideo.checkpoint.io import WeightLoadError
from hyvideo.data.manifest import ManifestError

from .config import ConfigError

#: Errors that mean "the input is wrong" (the message says which value and what is allowed).
USAGE_ERRORS = (ConfigError, ManifestError, WeightLoadError)


def env_rank() -> int:
    """This process's rank from the torchrun environment (0 for a plain launch)."""
    return int(os.environ.get("RANK", 0))


def setup_logging() -> None:
    """INFO on rank 0, warnings only on the other ranks, every line prefixed with the rank (one stderr handler;
    other handlers on the root logger, e.g. a caller's or pytest's, are kept)."""
    rank, root = env_rank(), logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "hyvideo.training"]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.set_name("hyvideo.training")
    handler.setFormatter(logging.Formatter(f"[rank{rank}] %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def run_cli(main: Callable, argv: list[str], prog: str) -> int:
    """Run ``main(argv)``; returns the exit status (0, or 2 after printing a usage error once)."""
    try:
        main(argv)
    except USAGE_ERRORS as e:
        if env_rank() == 0:
            print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0
