"""Rule calibrate: this machine's CPU rates (CPU-seconds of one thread) -> resources/calibration/cpu.yaml."""

import yaml

from tttnn import logs
from tttnn.cost.archs import find_arch
from tttnn.cost.calibrate import calibrate
from tttnn.cost.rates import load_calibration
from tttnn.io import write_text

with logs.compute_job(snakemake):
    arch, _ = find_arch(snakemake.params.embedder_name, snakemake.params.embedder["path"])
    shipped = load_calibration(snakemake.params.calibration)["cpu"]
    result = calibrate(snakemake.input.model, dict(snakemake.params.embedder), arch, shipped=shipped)
write_text(yaml.safe_dump(result, sort_keys=False), snakemake.output[0])
print(yaml.safe_dump(result, sort_keys=False), flush=True)
