rule summarize:
    input:
        ttt_results(),
    output:
        summary=report(
            R("tables/{run}/summary.csv"),
            caption="../report/summary.rst",
            category="Tables",
        ),
        curves=report(
            R("tables/{run}/curves.csv"),
            caption="../report/curves.rst",
            category="Tables",
        ),
        gap=R("tables/{run}/gap.csv"),
        costs=report(
            R("tables/{run}/costs.csv"),
            caption="../report/costs.rst",
            category="Tables",
        ),
    log:
        R("logs/summarize/{run}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=config["models"],
        bootstrap=config["figures"]["bootstrap"],
        seed=config["figures"]["seed"],
        short=config["figures"]["short_documents"],
    script:
        "../scripts/summarize.py"


rule summarize_methods:
    input:
        ttt=ttt_results(),
        methods=method_results(),
    output:
        methods=report(R("tables/{run}/methods.csv"), caption="../report/methods.rst", category="Tables"),
        order=R("tables/{run}/order.csv"),
        index_size=R("tables/{run}/index_size.csv"),
        distances=R("tables/{run}/index_distances.csv"),
    log:
        R("logs/summarize_methods/{run}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        n_shards=config["corpus"]["n_shards"],
        k=config["methods"].get("k"),
        bootstrap=config["figures"]["bootstrap"],
        seed=config["figures"]["seed"],
    script:
        "../scripts/summarize_methods.py"
