"""Rule summarize_methods: TTT and baseline/ablation results -> methods, order and index-size tables."""

from tttnn import logs
from tttnn.io import write_csv
from tttnn.report.compare import index_size_table, load_method_results, methods_table, order_table

logs.to_file(snakemake.log[0])
p, out = snakemake.params, snakemake.output
results = load_method_results([*snakemake.input.ttt, *snakemake.input.methods])
sizes, distances = index_size_table(results, p.n_shards, p.bootstrap, p.seed)
tables = {
    out.methods: methods_table(results, p.bootstrap, p.seed, p.k),
    out.order: order_table(results, p.bootstrap, p.seed),
    out.index_size: sizes,
    out.distances: distances,
}
for path, df in tables.items():
    write_csv(df, path)
