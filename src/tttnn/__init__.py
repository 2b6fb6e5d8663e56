"""tttnn: test-time training on nearest neighbours, as a library the Snakemake workflow calls."""
