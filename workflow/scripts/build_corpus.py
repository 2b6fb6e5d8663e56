"""Rule build_corpus: corpus source -> parquet shards, test and validation files, and a manifest."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
out = snakemake.output
steps.build_corpus(snakemake.params.corpus, out.train, out.test, out.valid, out.manifest)
