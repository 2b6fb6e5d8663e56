# `snakemake calibrate`: measure this machine's CPU rates for `snakemake plan` (~4 min, one thread): a training
# step and an evaluation of the first trained model, the embedder, faiss, a GGUF conversion and job start-up, in CPU-seconds.
# The plan uses the file over config/calibration.yaml's cpu section whenever it exists.

CALIBRATION_MODEL = (TRAINED or list(config["models"]))[0]


rule calibrate:
    input:
        model=os.path.join(RESOURCES, f"models/{CALIBRATION_MODEL}"),
    output:
        CPU_CALIBRATION,
    log:
        R("logs/calibrate.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        embedder=config["embedder"],
        embedder_name=config["embedder"]["name"],
        calibration=config["plan"]["calibration"],
    script:
        "../scripts/calibrate.py"
