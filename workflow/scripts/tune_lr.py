"""Checkpoint tune_lr: TTT on the validation documents for every rate of the grid -> the model's rate table."""

from tttnn import logs
from tttnn.config import performance_settings
from tttnn.io import write_csv
from tttnn.core.settings import LRTuneSettings
from tttnn.methods.lr_tune import tune

p, inp = snakemake.params, snakemake.input
perf = performance_settings(snakemake.config, snakemake.wildcards.model)
device = perf.pop("device")
with logs.compute_job(snakemake):
    table = tune(
        inp.model,
        list(inp.neighbors),
        list(inp.valid),
        {**p.tune["ttt"], **perf},
        LRTuneSettings(**p.tune["tune"]),
        snakemake.wildcards.model,
        p.query,
        p.split_max_tokens,
        device,
    )
    write_csv(table, snakemake.output[0])
