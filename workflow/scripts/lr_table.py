"""Rule lr_table: every tuned model's rate table -> tables/<run>/lr.csv and the lr figure."""

import pandas as pd

from tttnn import logs
from tttnn.io import write_csv
from tttnn.report.plots import lr_figure, save_figure

logs.to_file(snakemake.log[0])
table = pd.concat([pd.read_csv(f) for f in snakemake.input], ignore_index=True)
write_csv(table, snakemake.output.table)
save_figure(lr_figure(table), snakemake.output.pdf, snakemake.output.png)
