"""Rule ttt: test-time training on each test document of one task (resumes a killed run)."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
logs.set_threads(snakemake.threads)
p = snakemake.params
with logs.cpu_slot(snakemake.threads):
    steps.run_ttt(
        snakemake.input.model,
        snakemake.input.neighbors,
        snakemake.input.test,
        snakemake.output[0],
        p.ttt,
        p.query,
        p.split_max_tokens,
        p.device,
        p.dtype,
    )
