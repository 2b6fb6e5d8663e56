# `snakemake plan`: what the configured run costs, before it runs (jobs, work, CPU/GPU time, memory, disk per
# rule; expected wall time for plan.cores / plan.gpus). Cheap: no model weights, no corpus beyond what is on disk.

# It reruns when the config or a calibration file changes; `snakemake plan -f` re-plans after a build
# (the corpus sizes on disk then replace the estimates).


rule plan:
    input:
        calibration=config["plan"]["calibration"],
    output:
        csv=R(f"plan/{REPORT}.csv"),
        table=R(f"plan/{REPORT}.txt"),
    log:
        R(f"logs/plan/{REPORT}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        config=config,
        cpu_rates=cpu_rates(),
    script:
        "../scripts/plan.py"
