"""Rules incontext, interpolation(_valid), dynamic_eval, order and index_size: one baseline or ablation."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
logs.set_threads(snakemake.threads)
p, inp, wc = snakemake.params, snakemake.input, snakemake.wildcards
method = {"order": f"order-{wc.get('order')}", "index_size": f"index_size-{wc.get('nshards')}"}.get(p.method, p.method)
with logs.cpu_slot(snakemake.threads):
    steps.run_method(
        method,
        inp.model,
        inp.get("neighbors"),
        inp.test,
        snakemake.output[0],
        p.ttt,
        p.methods,
        p.retrieve,
        device=p.device,
        dtype=p.dtype,
    )
