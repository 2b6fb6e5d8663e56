# The paper's claims as paired differences with bootstrap intervals over documents (tttnn.report.claims).


rule claims:
    input:
        ttt=ttt_results(),
        methods=method_results(),
    output:
        table=report(R("tables/{run}/claims.csv"), caption="../report/claims.rst", category="Tables"),
        pdf=R("figures/{run}/claims.pdf"),
        png=report(R("figures/{run}/claims.png"), caption="../report/claims.rst", category="Figures"),
    log:
        R("logs/claims/{run}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=config["models"],
        n_shards=config["corpus"]["n_shards"],
        bootstrap=config["figures"]["bootstrap"],
        seed=config["figures"]["seed"],
    script:
        "../scripts/claims.py"
