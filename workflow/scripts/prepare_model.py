"""Rule prepare_model: hub id / local dir / GGUF (whole or split across packages) -> a plain local model directory.

A hub id is read from its copy under resources/hub/ (fetched by the local rule fetch_hub), never from the hub.

The length settings are read from the config here, not passed as params, so changing one re-checks it at the
next preparation without forcing one (see tttnn.config.check_lengths, also run at parse time once prepared).
"""

from tttnn import logs, runs
from tttnn.models.specs import local_spec

p = snakemake.params
with logs.compute_job(snakemake):
    runs.prepare_model(
        local_spec(p.source, snakemake.config["resources_dir"]),
        snakemake.output[0],
        p.join_dir,
        config=snakemake.config,
        model=snakemake.wildcards.model,
    )
