"""Rules incontext, interpolation(_valid), dynamic_eval, order and index_size: one baseline or ablation."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
logs.set_threads(snakemake.threads)
p, inp = snakemake.params, snakemake.input
method = p.method
if method == "order":
    method = f"order-{snakemake.wildcards.order}"
with logs.cpu_slot(snakemake.threads):
    steps.run_method(
        method,
        inp.model,
        inp.get("neighbors"),
        inp.test,
        snakemake.output[0],
        p.ttt,
        p.settings,
        query=p.query,
        split_max_tokens=p.split_max_tokens,
        device=p.device,
        dtype=p.dtype,
        n_docs=p.n_docs,
        eval_at=p.eval_at,
    )
