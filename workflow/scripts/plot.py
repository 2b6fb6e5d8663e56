"""Rule plot: tables -> the paper's figures (PDF and PNG)."""

import pandas as pd

from tttnn import logs
from tttnn.report.plots import plot_all

logs.to_file(snakemake.log[0])
plot_all(
    pd.read_csv(snakemake.input.curves),
    pd.read_csv(snakemake.input.costs),
    snakemake.params.models,
    snakemake.params.names,
    snakemake.output.pdf,
    snakemake.output.png,
)
