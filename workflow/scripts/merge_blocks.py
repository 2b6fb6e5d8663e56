"""Rule merge_blocks: a task's block files, in document order, into the task's file (cluster blocks)."""

from tttnn import logs
from tttnn.blocks import merge_blocks

logs.to_file(snakemake.log[0])
merge_blocks(list(snakemake.input), snakemake.output[0])
