"""Rule claims: TTT and baseline/ablation results -> the paired claims table and its figure."""

import logging

from tttnn import logs
from tttnn.io import write_csv
from tttnn.report.claims import claims_from_files
from tttnn.report.claims_plot import claims_figure
from tttnn.report.plots import save_figure

logs.to_file(snakemake.log[0])
p, out = snakemake.params, snakemake.output
table = claims_from_files([*snakemake.input.ttt, *snakemake.input.methods], p.models, p.bootstrap, p.seed, p.n_shards)
write_csv(table, out.table)
save_figure(claims_figure(table), out.pdf, out.png)
logging.getLogger("claims").info(
    "%d claim rows (%d Pile-weighted), %d separated from 0 in the paper's direction",
    len(table),
    int((table["task"] == "pile-weighted").sum()),
    int(table["separated"].sum()),
)
