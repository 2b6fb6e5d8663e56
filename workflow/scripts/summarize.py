"""Rule summarize: TTT results -> summary, curves, costs and model-gap tables."""

from tttnn import logs
from tttnn.io import atomic_path
from tttnn.summarize import gap_table, load_results, summarize

logs.to_file(snakemake.log[0])
out, p = snakemake.output, snakemake.params
summary, curves, costs = summarize(load_results(snakemake.input), p.bootstrap, p.seed, p.short)
tables = {out.summary: summary, out.curves: curves, out.costs: costs, out.gap: gap_table(curves, p.models)}
for path, df in tables.items():
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
