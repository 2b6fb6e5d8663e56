"""Documents into retrieval units: one per document, or windows of embedder tokens with a stride."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

CHUNK_COLUMNS = ["chunk_id", "doc_id", "task", "text", "n_tokens"]


def chunk_documents(
    docs: pd.DataFrame, mode: str = "document", tokenizer=None, size: int = 256, stride: int | None = None
) -> pd.DataFrame:
    """Chunks of ``docs`` (``doc_id, task, text``) as ``chunk_id, doc_id, task, text, n_tokens``.

    ``document``: the whole document is one unit (the paper; the embedder truncates it).
    ``window``: spans of at most ``size`` tokens of ``tokenizer``, starting every ``stride`` tokens,
    cut on the tokens' character offsets so the chunk text is an exact substring of the document.
    """
    stride = stride or size
    if mode not in ("document", "window"):
        raise ValueError(f"chunk.mode must be 'document' or 'window', got {mode!r}")
    if mode == "window" and (tokenizer is None or size < 1 or stride < 1):
        raise ValueError("chunk.mode 'window' needs a tokenizer and positive size and stride")
    rows = []
    for doc_id, task, text in zip(docs["doc_id"], docs["task"], docs["text"]):
        if mode == "document":
            n = (
                len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
                if tokenizer
                else len(re.findall(r"\S+", text))
            )
            rows.append((f"{doc_id}#0", doc_id, task, text, n))
            continue
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets: Sequence[tuple[int, int]] = enc["offset_mapping"]
        for i, start in enumerate(range(0, max(len(offsets), 1), stride)):
            span = offsets[start : start + size]
            if not span:
                break
            piece = text[span[0][0] : span[-1][1]]
            if piece.strip():
                rows.append((f"{doc_id}#{i}", doc_id, task, piece, len(span)))
            if start + size >= len(offsets):
                break
    return pd.DataFrame(rows, columns=CHUNK_COLUMNS)


def split_query(text: str, mode: str = "full", max_tokens: int = 1024) -> tuple[str, str]:
    """``(query text, evaluated text)`` of a test document.

    ``full``: the whole document is both query and evaluation target (the paper's default).
    ``split``: the first min(``max_tokens``, half) whitespace-delimited tokens are the query, the rest
    is evaluated, so the evaluated text is never seen by retrieval.
    """
    if mode == "full":
        return text, text
    if mode != "split":
        raise ValueError(f"retrieve.query must be 'full' or 'split', got {mode!r}")
    words = list(re.finditer(r"\S+", text))
    n = min(max_tokens, len(words) // 2)
    if n == 0:
        raise ValueError("document too short to split into query and evaluated parts")
    cut = words[n].start()
    return text[:cut], text[cut:]
