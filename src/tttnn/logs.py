"""Logging for workflow scripts: everything, tqdm included, goes to the rule's log file."""

from __future__ import annotations

import logging
import os
import sys


def to_file(path: str | os.PathLike | None, level: int = logging.INFO) -> None:
    """Send logging and stderr (where tqdm draws) to ``path``; keep the console when ``path`` is None."""
    if path:
        fh = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives for the process
        sys.stderr = fh
    logging.basicConfig(level=level, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def set_threads(n: int) -> None:
    """Use the rule's threads for torch and faiss."""
    import torch

    torch.set_num_threads(max(1, n))
    try:
        import faiss

        faiss.omp_set_num_threads(max(1, n))
    except ImportError:
        pass
