"""Rules ttt (one task) and evaluate (every task of a model without TTT): resumes a killed run."""

from tttnn import logs, steps

p, inp = snakemake.params, snakemake.input
with logs.compute_job(snakemake):
    steps.run_ttt(
        inp.model,
        inp.get("neighbors"),  # evaluate (k = 0) reads none
        inp.test,
        list(snakemake.output),
        p.ttt,
        p.query,
        p.split_max_tokens,
        p.device,
        p.n_docs,
    )
