"""The report's statistics without torch: task metrics as ratios of sums, the Pile-weighted mean, and
interpolation's alpha chosen from its records (the report layer imports no model code)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tttnn.data.tasks import PILE_WEIGHTS


def aggregate(logliks: Iterable[float], n_bytes: Iterable[int], n_words: Iterable[int]) -> dict[str, float]:
    """Task-level metrics as ratios of sums over documents."""
    ll, nb, nw = sum(logliks), sum(n_bytes), sum(n_words)
    if nb <= 0:
        raise ValueError("cannot aggregate documents with zero bytes in total")
    bpb = -ll / (nb * math.log(2))
    nll_word = -ll / max(nw, 1)
    word_ppl = math.exp(nll_word) if nll_word < 700 else math.inf
    return {"bits_per_byte": bpb, "byte_perplexity": 2.0**bpb, "word_perplexity": word_ppl}


def pile_weighted(values: Mapping[str, float], weights: Mapping[str, float] = PILE_WEIGHTS) -> float:
    """Weighted mean of per-task values by the Pile's sampling weights, renormalised over the tasks given."""
    known = {t: v for t, v in values.items() if t in weights}
    if not known:
        raise ValueError(f"none of the tasks {sorted(values)} has a Pile weight")
    total = sum(weights[t] for t in known)
    return sum(weights[t] * v for t, v in known.items()) / total


def check_alpha_grid(records: Sequence[dict[str, Any]]) -> list[float]:
    """The alpha grid every record shares (interpolation records score the document at each alpha)."""
    if not records:
        raise ValueError("no records to choose alpha from")
    alphas = list(records[0]["alphas"])
    for r in records:
        if list(r["alphas"]) != alphas:
            raise ValueError(f"records of document {r.get('doc_id')} use a different alpha grid")
    return alphas


def choose_alpha(records: Sequence[dict[str, Any]]) -> float:
    """The grid alpha maximising the summed log-likelihood (= minimising ratio-of-sums bpb); ties: smallest."""
    alphas = check_alpha_grid(records)
    totals = [sum(r["loglik_by_alpha"][i] for r in records) for i in range(len(alphas))]
    best = max(range(len(alphas)), key=lambda i: (totals[i], -alphas[i]))
    return alphas[best]


def oracle_alpha(test_records: Sequence[dict[str, Any]]) -> float:
    """The alpha chosen on the test documents themselves (the authors' optimistic protocol); label it so."""
    return choose_alpha(test_records)


def with_alpha(record: dict[str, Any], alpha: float) -> dict[str, Any]:
    """A copy of a record with checkpoints ``[0, k]``: the plain model and the mixture at ``alpha``."""
    alphas = list(record["alphas"])
    matches = [i for i, a in enumerate(alphas) if math.isclose(a, alpha, rel_tol=0, abs_tol=1e-12)]
    if not matches:
        raise ValueError(f"alpha {alpha} is not on the record's grid {alphas}")
    out = dict(record)
    out["alpha"] = alphas[matches[0]]
    out["checkpoints"] = [0, record["k"]]
    out["loglik"] = [record["loglik"][0], record["loglik_by_alpha"][matches[0]]]
    return out
