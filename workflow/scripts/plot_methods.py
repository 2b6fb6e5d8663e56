"""Rule plot_methods: methods, order and index-size tables -> their figures (PDF and PNG)."""

import pandas as pd

from tttnn import logs
from tttnn.report.plots import index_size_figure, methods_figure, order_figure, save_figure, sns

logs.to_file(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
sns.set_theme(style="whitegrid", context="notebook")
figures = [
    methods_figure(pd.read_csv(inp.methods)),
    order_figure(pd.read_csv(inp.order)),
    index_size_figure(pd.read_csv(inp.index_size), pd.read_csv(inp.distances)),
]
for fig, pdf, png in zip(figures, out.pdf, out.png):
    save_figure(fig, pdf, png)
