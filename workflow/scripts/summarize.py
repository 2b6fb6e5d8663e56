"""Rule summarize: TTT results -> summary, curves, costs and model-gap tables."""

from tttnn import logs
from tttnn.io import write_csv
from tttnn.report.summarize import gap_from_records, load_results, summarize

logs.to_file(snakemake.log[0])
out, p = snakemake.output, snakemake.params
records = load_results(snakemake.input)
summary, curves, costs = summarize(records, p.bootstrap, p.seed, p.short)
tables = {out.summary: summary, out.curves: curves, out.costs: costs, out.gap: gap_from_records(records, p.models)}
for path, df in tables.items():
    write_csv(df, path)
