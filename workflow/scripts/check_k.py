"""Rule check_k: retrieve.k against the number of chunks in the whole index (parquet metadata only)."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
steps.check_k_fits(snakemake.input.chunks, int(snakemake.wildcards.k), snakemake.output[0])
