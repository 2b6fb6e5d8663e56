"""Rule summarize: TTT results -> summary, curves and costs tables."""

from tttnn import logs
from tttnn.io import atomic_path
from tttnn.summarize import load_results, summarize

logs.to_file(snakemake.log[0])
tables = summarize(load_results(snakemake.input), snakemake.params.bootstrap, snakemake.params.seed)
for df, path in zip(tables, [snakemake.output.summary, snakemake.output.curves, snakemake.output.costs]):
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
