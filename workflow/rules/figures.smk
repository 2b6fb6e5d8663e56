rule plot:
    input:
        summary=R("tables/{run}/summary.csv"),
        curves=R("tables/{run}/curves.csv"),
        costs=R("tables/{run}/costs.csv"),
    output:
        pdf=expand(R("figures/{{run}}/{name}.pdf"), name=FIGURES),
        png=report(
            expand(R("figures/{{run}}/{name}.png"), name=FIGURES),
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        R("logs/plot/{run}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        names=FIGURES,
        models=config["models"],
    script:
        "../scripts/plot.py"


rule plot_methods:
    input:
        methods=R("tables/{run}/methods.csv"),
        order=R("tables/{run}/order.csv"),
        index_size=R("tables/{run}/index_size.csv"),
        distances=R("tables/{run}/index_distances.csv"),
    output:
        pdf=expand(R("figures/{{run}}/{name}.pdf"), name=METHOD_FIGURES),
        png=report(
            expand(R("figures/{{run}}/{name}.png"), name=METHOD_FIGURES),
            caption="../report/method_figures.rst",
            category="Figures",
        ),
    log:
        R("logs/plot_methods/{run}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_methods.py"
