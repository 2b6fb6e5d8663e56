"""How many test documents per task a claim needs: a power estimate from a finished run's per-document
paired differences (used to size config/paper-mini.yaml before running it).

For claims (a) TTT-NN after k < no TTT, (b) TTT-NN < in-context and (f) the gap to the large model, per task:
the per-document paired difference in bpb (bits / bytes of that document), its mean and standard deviation,
and the documents needed for a 95% interval to exclude 0 with 80% power, n = ((1.96 + 0.84) sd / |mean|)^2,
Pile-weighted too (the weighted mean difference, its variance from the tasks' weighted variances).

    python benchmarks/power.py results default smollm2-135m qwen2.5-coder-1.5b
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from tttnn import jsonl
from tttnn.data.tasks import PILE_WEIGHTS

Z = 1.96 + 0.84  # two-sided 95% interval, 80% power


def per_doc_bpb(path: Path, at: str) -> dict[str, float]:
    """bpb of each document at n = 0 (``at='first'``) or its last measured checkpoint (``'last'``)."""
    out = {}
    for r in jsonl.read_records(path):
        ll = r["loglik"][0] if at == "first" else r["loglik"][-1]
        out[r["doc_id"]] = -ll / (r["n_bytes"] * math.log(2))
    return out


def needed(diffs: np.ndarray) -> float:
    """Documents needed for the interval of the mean difference to exclude 0 with 80% power."""
    if len(diffs) < 2 or diffs.std(ddof=1) == 0:
        return 1.0
    return (Z * diffs.std(ddof=1) / abs(diffs.mean())) ** 2


def main(results: str, run: str, small: str, large: str) -> None:
    root = Path(results)
    tasks = sorted(p.stem for p in (root / "ttt" / run / small).glob("*.jsonl"))
    claims: dict[str, dict[str, np.ndarray]] = {"a": {}, "b": {}, "f": {}}
    for task in tasks:
        before = per_doc_bpb(root / "ttt" / run / small / f"{task}.jsonl", "first")
        after = per_doc_bpb(root / "ttt" / run / small / f"{task}.jsonl", "last")
        ids = sorted(before)
        claims["a"][task] = np.array([after[i] - before[i] for i in ids])
        ic = root / "baselines" / run / small / "incontext" / f"{task}.jsonl"
        if ic.exists():
            ctx = per_doc_bpb(ic, "last")
            claims["b"][task] = np.array([after[i] - ctx[i] for i in ids if i in ctx])
        lg = root / "ttt" / run / large / f"{task}.jsonl"
        if lg.exists():
            big = per_doc_bpb(lg, "first")
            # per document: the share of its own gap closed (documents whose gap is <= 0 left out)
            claims["f"][task] = np.array(
                [(before[i] - after[i]) / (before[i] - big[i]) for i in ids if before[i] - big[i] > 0.02]
            )
    print("claim  task             n   mean diff    sd   docs needed (95% CI excludes 0, 80% power)")
    for name, by_task in claims.items():
        for task, d in by_task.items():
            if len(d):
                print(f"{name:5}  {task:15} {len(d):3} {d.mean():+10.3f} {d.std(ddof=1):6.3f} {needed(d):8.1f}")
        w = {t: PILE_WEIGHTS[t] for t in by_task if t in PILE_WEIGHTS and len(by_task[t]) > 1}
        if w:
            tot = sum(w.values())
            mean = sum(w[t] / tot * by_task[t].mean() for t in w)
            # per-task n documents each: var = sum (w_t / W)^2 sd_t^2 / n -> n for |mean| / sqrt(var) = Z
            var1 = sum((w[t] / tot) ** 2 * by_task[t].var(ddof=1) for t in w)
            print(f"{name:5}  {'pile-weighted':15}     {mean:+10.3f}        {Z**2 * var1 / mean**2:8.1f} per task")


if __name__ == "__main__":
    main(*sys.argv[1:5])
