"""Rule build_corpus: corpus source -> parquet shards."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
steps.build_corpus(snakemake.params.corpus, snakemake.output.train, snakemake.output.test)
