"""Rules incontext, interpolation(_valid), dynamic_eval, order and index_size: one baseline or ablation, all tasks.

Settings that change only speed come from the config, not params (see scripts/ttt.py)."""

from tttnn import logs, runs
from tttnn.config import performance_settings

p, inp, wc = snakemake.params, snakemake.input, snakemake.wildcards
method = {"order": f"order-{wc.get('order')}", "index_size": f"index_size-{wc.get('nshards')}"}.get(p.method, p.method)
perf = performance_settings(snakemake.config, wc.model)
device = perf.pop("device")
with logs.compute_job(snakemake):
    runs.run_method(
        method,
        inp.model,
        inp.get("neighbors"),
        inp.test,
        list(snakemake.output),
        {**p.ttt, **perf},
        p.methods,
        p.retrieve,
        device=device,
        block=p.get("block"),  # with cluster blocks: [start, stop) of the task's documents
        results_dir=snakemake.config["results_dir"],
    )
