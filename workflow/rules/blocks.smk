# cluster.max_runtime / cluster.block_docs: a task's per-document results come from several block jobs (each
# within the partition's time limit) and are joined here, in document order, into the file one job would write.
# A local job (on the submit host): it only concatenates small files.

if BLOCKED:

    localrules:
        merge_blocks,

    rule merge_blocks:
        input:
            block_parts,
        output:
            R("{kind}/{run}/{model}/{name}.jsonl"),
        log:
            R("logs/merge_blocks/{kind}/{run}/{model}/{name}.log"),
        wildcard_constraints:
            kind="ttt|baselines",
            name=r"[A-Za-z0-9_.-]+(/[a-z0-9-]+)?",
        conda:
            "../../envs/tttnn.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        script:
            "../scripts/merge_blocks.py"
