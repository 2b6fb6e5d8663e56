"""Rule fetch_hub (local, on the submit host): one hub repository's loadable files -> resources/hub/<key>."""

from tttnn import logs
from tttnn.models import fetch

logs.to_file(snakemake.log[0])
fetch.fetch(snakemake.params.repo, snakemake.output[0], weights=snakemake.params.weights)
