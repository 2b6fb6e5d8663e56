"""Rules ttt (one task) and evaluate (every task of a model without TTT): resumes a killed run."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
logs.set_threads(snakemake.threads)
p, inp = snakemake.params, snakemake.input
with logs.cpu_slot(snakemake.threads):
    steps.run_ttt(
        inp.model,
        inp.neighbors,
        inp.test,
        list(snakemake.output),
        p.ttt,
        p.query,
        p.split_max_tokens,
        p.device,
    )
