"""Rules ttt (one task) and evaluate (every task of a model without TTT; with cluster blocks, one block of a
task each): resumes a killed run.

Settings that change only speed (eval batch, batch_documents, tf32, compile, device) come from the config, not
params, so changing one never reruns a finished job."""

from tttnn import logs, runs
from tttnn.config import performance_settings

p, inp = snakemake.params, snakemake.input
perf = performance_settings(snakemake.config, snakemake.wildcards.model)
device = perf.pop("device")
with logs.compute_job(snakemake):
    runs.run_ttt(
        inp.model,
        inp.get("neighbors"),  # evaluate (k = 0) reads none
        inp.test,
        list(snakemake.output),
        {**p.ttt, **perf},
        p.query,
        p.split_max_tokens,
        device,
        p.n_docs,
        p.get("block"),  # with cluster blocks: [start, stop) of the task's documents
        snakemake.config["results_dir"],
    )
