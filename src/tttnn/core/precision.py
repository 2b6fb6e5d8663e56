"""Number formats for TTT, shared by the batch-1 and the batched runner.

``float32``: everything in float32 (the paper). ``bfloat16``: float32 weights and optimizer, forward and
backward under ``torch.autocast(bfloat16)``. ``bfloat16-pure``: the model's weights are bfloat16, the
optimizer updates a float32 master copy (with float32 AdamW state) that is rounded back into the weights
after every step. ``tf32`` (CUDA only) lets float32 matmuls use TF32; ``compile`` wraps the forward pass
in ``torch.compile``. Log-softmax and the summed log-likelihoods are always computed in float32 or wider.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

MODES = ("float32", "bfloat16", "bfloat16-pure")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Precision:
    """The number format of one runner: which dtype the weights hold and whether forwards autocast."""

    mode: str
    device_type: str
    compile: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"ttt.dtype must be one of {list(MODES)}, got {self.mode!r}")

    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype the model's (or the stacked copies') weights are kept in for forward and backward."""
        return torch.bfloat16 if self.mode == "bfloat16-pure" else torch.float32

    @property
    def master(self) -> bool:
        """Whether the optimizer updates a separate float32 master copy of low-precision weights."""
        return self.mode == "bfloat16-pure"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for forward passes: bfloat16 autocast in ``bfloat16`` mode, else nothing."""
        if self.mode == "bfloat16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def maybe_compile(self, fn: F) -> F:
        """``torch.compile(fn)`` when compilation is on, else ``fn`` unchanged."""
        return torch.compile(fn) if self.compile else fn  # type: ignore[return-value]


def setup_precision(cfg: Any, device: torch.device) -> Precision:
    """The :class:`Precision` for a TTT config on ``device``; sets TF32 (process-wide) on CUDA as asked."""
    tf32 = bool(getattr(cfg, "tf32", False))
    if device.type == "cuda":  # process-wide: the config says which, either way
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    elif tf32:
        log.info("ttt.tf32 has no effect on %s", device.type)
    return Precision(getattr(cfg, "dtype", "float32"), device.type, bool(getattr(cfg, "compile", False)))
