"""Rules build_corpus (test/validation documents and manifest; minipile: every file) and build_corpus_shard."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
out = snakemake.output
if out.get("stats"):  # build_corpus_shard
    steps.build_corpus_shard(snakemake.params.corpus, int(snakemake.wildcards.shard), out[0], out.stats)
else:
    steps.build_corpus(snakemake.params.corpus, out.get("train", []), out.test, out.valid, out.manifest)
