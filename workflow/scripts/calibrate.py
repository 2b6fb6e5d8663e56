"""Rule calibrate: this machine's CPU rates (CPU-seconds of one thread) -> resources/calibration/cpu.yaml."""

import yaml

from tttnn import logs
from tttnn.calibrate import calibrate
from tttnn.io import write_text
from tttnn.plan import find_arch

with logs.compute_job(snakemake):
    arch, _ = find_arch(snakemake.params.embedder_name, snakemake.params.embedder["path"])
    result = calibrate(snakemake.input.model, dict(snakemake.params.embedder), arch)
write_text(yaml.safe_dump(result, sort_keys=False), snakemake.output[0])
print(yaml.safe_dump(result, sort_keys=False), flush=True)
