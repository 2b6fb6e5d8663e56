"""Rules incontext, interpolation(_valid), dynamic_eval, order and index_size: one baseline or ablation, all tasks."""

from tttnn import logs, steps

p, inp, wc = snakemake.params, snakemake.input, snakemake.wildcards
method = {"order": f"order-{wc.get('order')}", "index_size": f"index_size-{wc.get('nshards')}"}.get(p.method, p.method)
with logs.compute_job(snakemake):
    steps.run_method(
        method,
        inp.model,
        inp.get("neighbors"),
        inp.test,
        list(snakemake.output),
        p.ttt,
        p.methods,
        p.retrieve,
        device=p.device,
    )
