"""Hyper-parameters of test-time training, validated with pydantic (light: no torch import)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# how the loop is run, not what it computes (results equal within 1e-5, measured on CPU: tests/test_batched.py,
# tests/test_ttt.py): never a rerun trigger or in a fingerprint
PERFORMANCE_KEYS = ("eval_batch_size", "batch_documents")
# CUDA settings whose effect on results no GPU has measured here (TF32 rounds matmul inputs to 10 mantissa bits):
# result-determining when on (a change reruns the jobs, a resumed file refuses to mix); off, they are left out of
# the fingerprint so results computed without them keep theirs
RESULT_WHEN_ON = ("tf32", "compile")


class TTTConfig(BaseModel):
    """Hyper-parameters of test-time training; the defaults are the paper's (gpt2)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(2e-5, ge=0)
    lr_source: Literal["fixed", "tuned"] = "fixed"  # ttt.lr as given, or chosen by tune_lr (ttt.lr: auto)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = Field(1.0, gt=0)
    max_length: int = Field(1024, ge=2)
    k: int = Field(20, ge=0)
    max_windows_per_neighbor: int | None = Field(None, ge=1)
    eval_at: list[int] | None = None
    reset_optimizer: bool = True
    seed: int = 0
    eval_batch_size: int = Field(4, ge=1)
    prefix_token: str | None = None
    pad_checkpoints: bool = False  # record checkpoints past a document's last neighbour (repeating its value)
    # how the loop is run; none of these is a hyper-parameter of the method
    batch_documents: int = Field(1, ge=1)  # documents advanced in lock-step (own weights and AdamW each); same results
    dtype: Literal["float32", "bfloat16", "bfloat16-pure"] = "float32"  # bf16 autocast / bf16 weights + fp32 master
    tf32: bool = False  # CUDA only: TF32 matmuls for float32 work
    compile: bool = False  # torch.compile the forward pass (CUDA; slow to start)

    def result_settings(self) -> dict:
        """The settings that determine results (fingerprints, Snakemake params): all but PERFORMANCE_KEYS, and
        the RESULT_WHEN_ON keys only when on."""
        return {
            k: v
            for k, v in self.model_dump().items()
            if k not in PERFORMANCE_KEYS and (k not in RESULT_WHEN_ON or v)
        }

    def checkpoints(self) -> list[int]:
        """Neighbour counts after which the document is evaluated (0 = before any training)."""
        pts = range(self.k + 1) if self.eval_at is None else self.eval_at
        return sorted({0, *(n for n in pts if n <= self.k)})


class LRTuneSettings(BaseModel):
    """``ttt.lr_grid`` and ``ttt.lr_tune``: the rates tried, how far each is run, and the near-tie rule."""

    model_config = ConfigDict(extra="forbid")

    grid: list[float] = Field(default_factory=lambda: [3e-6, 1e-5, 3e-5, 1e-4, 3e-4], min_length=1)
    k: int = Field(5, ge=1)  # neighbours each rate trains on (evaluated at 0 and k only)
    n_docs: int | None = Field(None, ge=1)  # the first n validation documents per task (None: all)
    tolerance: float = Field(0.01, ge=0)  # relative: within (1 + tolerance) x the best counts as a tie

    @field_validator("grid")
    @classmethod
    def _positive_unique(cls, grid: list[float]) -> list[float]:
        if any(not (math.isfinite(r) and r > 0) for r in grid):
            raise ValueError(f"every rate must be finite and > 0, got {grid}")
        if len(set(grid)) != len(grid):
            raise ValueError(f"rates listed more than once: {grid}")
        return sorted(grid)
