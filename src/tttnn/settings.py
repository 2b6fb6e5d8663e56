"""Hyper-parameters of test-time training, validated with pydantic (light: no torch import)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


# how the loop is run, not what it computes (results equal within 1e-5): never a rerun trigger or in a fingerprint
PERFORMANCE_KEYS = ("eval_batch_size", "batch_documents", "tf32", "compile")


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
        """The settings that determine results (fingerprints, Snakemake params): all but PERFORMANCE_KEYS."""
        return {k: v for k, v in self.model_dump().items() if k not in PERFORMANCE_KEYS}

    def checkpoints(self) -> list[int]:
        """Neighbour counts after which the document is evaluated (0 = before any training)."""
        pts = range(self.k + 1) if self.eval_at is None else self.eval_at
        return sorted({0, *(n for n in pts if n <= self.k)})
