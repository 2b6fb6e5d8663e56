"""The paper's figures from the summary tables (seaborn), each saved as PDF and PNG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tttnn.io import atomic_path  # noqa: E402
from tttnn.report.summarize import PILE_ROW  # noqa: E402


def _trained(models: dict[str, Any]) -> list[str]:
    return [m for m, spec in models.items() if spec.get("train", True)]


def _task_order(curves: pd.DataFrame, model: str) -> list[str]:
    """Tasks by relative gain (largest first) of ``model`` after its last neighbour; the aggregate last."""
    g = curves[(curves["model"] == model) & (curves["task"] != PILE_ROW)]
    last = g[g["n_neighbors"] == g["n_neighbors"].max()].sort_values("ratio")
    return last["task"].tolist() + ([PILE_ROW] if (curves["task"] == PILE_ROW).any() else [])


def _settings(curves: pd.DataFrame, models: dict[str, Any], baselines: bool) -> pd.DataFrame:
    """Rows at n = 0 ("<model>, no TTT") and after the last neighbour ("<model>, TTT on k neighbours")
    for the trained models, and with ``baselines`` the untrained models at n = 0 too."""
    rows = []
    for m in models:
        trained = m in _trained(models)
        if not trained and not baselines:
            continue
        g = curves[curves["model"] == m]
        rows.append(g[g["n_neighbors"] == 0].assign(setting=f"{m}, no TTT"))
        k = g["n_neighbors"].max()
        if trained and k > 0:
            rows.append(g[g["n_neighbors"] == k].assign(setting=f"{m}, TTT on {k} neighbours"))
    return pd.concat(rows)


def _bars(data: pd.DataFrame, order: list[str], title: str) -> plt.Figure:
    """Grouped bars of bpb per task and setting, with the 95% bootstrap intervals as error bars."""
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(order) + 2), 4))
    sns.barplot(data=data, x="task", y="bits_per_byte", hue="setting", order=order, ax=ax)
    for container, (_, sub) in zip(ax.containers, data.groupby("setting", sort=False)):
        sub = sub.set_index("task").reindex(order)
        xs = [bar.get_x() + bar.get_width() / 2 for bar in container]
        ax.errorbar(
            xs,
            sub["bits_per_byte"],
            yerr=[sub["bits_per_byte"] - sub["ci_low"], sub["ci_high"] - sub["bits_per_byte"]],
            fmt="none",
            ecolor="black",
            capsize=2,
            lw=0.8,
        )
    ax.set_xlabel("task (sorted by relative gain)")
    ax.set_ylabel("bits per byte")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def bpb_by_task(curves: pd.DataFrame, models: dict[str, Any]) -> plt.Figure:
    """Per task: bpb before TTT and after the last neighbour, per model (the paper's bar figure)."""
    first = (_trained(models) or list(models))[0]
    return _bars(
        _settings(curves, models, baselines=not _trained(models)),
        _task_order(curves, first),
        "Bits per byte before and after test-time training on nearest neighbours",
    )


def bpb_vs_neighbors(curves: pd.DataFrame, models: dict[str, Any]) -> plt.Figure:
    """bpb and its ratio to n = 0 against the number of neighbours, per task, 95% bootstrap bands."""
    trained = _trained(models) or list(models)
    fig, axes = plt.subplots(len(trained), 2, figsize=(11, 4 * len(trained)), squeeze=False)
    palette = dict(zip(sorted(curves["task"].unique()), sns.color_palette("tab10", curves["task"].nunique())))
    for row, m in enumerate(trained):
        g = curves[curves["model"] == m]
        for col, (y, lo, hi, label) in enumerate(
            [
                ("bits_per_byte", "ci_low", "ci_high", "bits per byte"),
                ("ratio", "ratio_ci_low", "ratio_ci_high", "bpb / bpb at n = 0"),
            ]
        ):
            ax = axes[row][col]
            for task, t in g.groupby("task"):
                t = t.sort_values("n_neighbors")
                style = "--" if task == PILE_ROW else "-"
                ax.plot(t["n_neighbors"], t[y], style, marker="o", ms=3, color=palette[task], label=task)
                ax.fill_between(t["n_neighbors"], t[lo], t[hi], color=palette[task], alpha=0.15)
            ax.set_xlabel("neighbours trained on")
            ax.set_ylabel(label)
            ax.set_title(f"{m}: {label}")
        axes[row][1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def training_cost(costs: pd.DataFrame, models: dict[str, Any]) -> plt.Figure:
    """Measured seconds of training per neighbour, by task and model (mean and 95% CI over documents)."""
    data = costs[costs["model"].isin(_trained(models)) & (costs["n_neighbors"] > 0)]
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(data):
        sns.barplot(data=data, x="task", y="train_seconds_per_neighbor", hue="model", ax=ax)
    ax.set_ylabel("seconds of training per neighbour")
    ax.set_title("Measured training cost per neighbour")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def model_comparison(curves: pd.DataFrame, models: dict[str, Any]) -> plt.Figure:
    """Every model without TTT, and the trained models after their last neighbour, per task; under each task
    the share of the small-to-large gap that TTT closes (the paper's model-size claim)."""
    from tttnn.report.summarize import gap_table

    first = (_trained(models) or list(models))[0]
    order = _task_order(curves, first)
    fig = _bars(
        _settings(curves, models, baselines=True), order, "Models with test-time training against models without it"
    )
    gaps = gap_table(curves, models)
    if len(gaps):
        g = gaps[gaps["small"] == first].groupby("task")["gap_closed"].first()
        ax = fig.axes[0]
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([f"{t}\ngap closed {g[t]:.0%}" if t in g and g[t] == g[t] else t for t in order], fontsize=8)
        ax.set_xlabel(f"task; gap closed: share of the gap from {first} to {gaps['large'].iloc[0]} closed by TTT")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.set_size_inches(fig.get_size_inches()[0] + 3, 4.5)
        fig.tight_layout()
    return fig


FIGURES = {
    "bpb_by_task": lambda curves, costs, models: bpb_by_task(curves, models),
    "bpb_vs_neighbors": lambda curves, costs, models: bpb_vs_neighbors(curves, models),
    "training_cost": lambda curves, costs, models: training_cost(costs, models),
    "model_comparison": lambda curves, costs, models: model_comparison(curves, models),
}


def save_figure(fig: plt.Figure, pdf: str, png: str) -> None:
    """Save as PDF and PNG, atomically."""
    for path in (pdf, png):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=path.rsplit(".", 1)[1])
    plt.close(fig)


def plot_all(
    curves: pd.DataFrame,
    costs: pd.DataFrame,
    models: dict[str, Any],
    names: Sequence[str],
    pdfs: Sequence[str],
    pngs: Sequence[str],
) -> None:
    sns.set_theme(style="whitegrid", context="notebook")
    for name, pdf, png in zip(names, pdfs, pngs):
        save_figure(FIGURES[name](curves, costs, models), pdf, png)


def nothing_to_draw(title: str, why: str) -> plt.Figure:
    """A figure that says in words why its table is empty, instead of failing the whole plotting job."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{title}: nothing to draw\n{why}", ha="center", va="center", fontsize=10, wrap=True)
    return fig


def methods_figure(methods: pd.DataFrame) -> plt.Figure:
    """Per task (and Pile-weighted): no TTT, in-context, interpolation, dynamic evaluation, TTT-NN, per model."""
    if methods.empty:
        return nothing_to_draw("Methods", "no baseline ran (the config's methods section enables none)")
    data = methods.assign(
        setting=[
            f"{m}: {lab}" if methods["model"].nunique() > 1 else lab
            for m, lab in zip(methods["model"], methods["label"])
        ]
    )
    tasks = [t for t in sorted(data["task"].unique()) if t != PILE_ROW] + (
        [PILE_ROW] if (data["task"] == PILE_ROW).any() else []
    )
    fig = _bars(data, tasks, "TTT-NN against retrieval in context, interpolation and dynamic evaluation")
    fig.axes[0].set_xlabel("task")
    fig.axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.set_size_inches(max(8, 1.6 * len(tasks) + 5), 4.5)
    fig.tight_layout()
    return fig


def order_figure(order: pd.DataFrame) -> plt.Figure:
    """bpb / bpb at n = 0 against neighbours trained on, per neighbour order, one panel per task and model."""
    if order.empty:
        return nothing_to_draw("Neighbour order", "the order ablation did not run (methods.order is not set)")
    keys = sorted(order.groupby(["model", "task"]).groups)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), squeeze=False, sharey=True)
    for ax, (model, task) in zip(axes[0], keys):
        g = order[(order["model"] == model) & (order["task"] == task)]
        for name, t in g.groupby("order", sort=False):
            t = t.sort_values("n_neighbors")
            ax.errorbar(
                t["n_neighbors"],
                t["ratio"],
                yerr=[t["ratio"] - t["ratio_ci_low"], t["ratio_ci_high"] - t["ratio"]],
                marker="o",
                ms=3,
                capsize=2,
                label=name,
            )
        ax.set_title(f"{task}" if order["model"].nunique() == 1 else f"{model}: {task}", fontsize=9)
        ax.set_xlabel("neighbours trained on")
    axes[0][0].set_ylabel("bpb / bpb at n = 0")
    axes[0][-1].legend(fontsize=7)
    words = {"nearest": "nearest first (the method)", "farthest": "farthest first", "batch": "shuffled minibatches"}
    shown = [words.get(o, o) for o in words if o in set(order["order"])]
    fig.suptitle("Neighbour order: " + ", ".join(shown), fontsize=10)
    fig.tight_layout()
    return fig


def index_size_figure(sizes: pd.DataFrame, distances: pd.DataFrame) -> plt.Figure:
    """bpb after k neighbours (relative to n = 0) and mean neighbour distance against the fraction of shards."""
    if sizes.empty:
        return nothing_to_draw("Index size", "the index-size ablation did not run (methods.index_size is not set)")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (model, task), g in sizes.groupby(["model", "task"]):
        g = g.sort_values("fraction")
        label = task if sizes["model"].nunique() == 1 else f"{model}: {task}"
        a.plot(g["fraction"], g["ratio"], marker="o", label=label)
    a.set_xscale("log", base=2)
    a.set_xlabel("fraction of the index searched")
    a.set_ylabel("bpb after k / bpb at n = 0")
    a.set_title("Gain from TTT against index size", fontsize=10)
    a.legend(fontsize=7)
    d = distances.groupby(["task", "fraction", "rank"], as_index=False)["mean_distance"].mean()
    for (task, frac), g in d.groupby(["task", "fraction"]):
        b.plot(g["rank"] + 1, g["mean_distance"], alpha=0.4 + 0.6 * frac, label=f"{task}, {frac:.3g}")
    b.set_xlabel("neighbour rank")
    b.set_ylabel("mean L2 distance")
    b.set_title("Neighbour distance by rank and index fraction", fontsize=10)
    b.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def lr_figure(table: pd.DataFrame) -> plt.Figure:
    """tune_lr: bits per byte after k neighbours against the rate (log axis), one line per task and the
    Pile-weighted score the choice is made on (thick), the bpb before TTT dotted, the chosen rate marked."""
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        g = table[table["model"] == model]
        k = int(g["n_neighbors"].max())
        at_k = g[g["n_neighbors"] == k]
        for task, t in at_k.groupby("task", sort=False):
            score = task in ("pile-weighted", "all")
            line = ax.plot(t["lr"], t["bits_per_byte"], marker="o", lw=2.5 if score else 1, label=task, zorder=3 if score else 2)
            start = g[(g["n_neighbors"] == 0) & (g["task"] == task)]["bits_per_byte"]
            if len(start):
                ax.axhline(float(start.iloc[0]), color=line[0].get_color(), ls=":", lw=0.8)
        chosen = float(g.loc[g["chosen"].astype(bool), "lr"].iloc[0])
        ax.axvline(chosen, color="black", ls="--", lw=1)
        ax.annotate(f"chosen {chosen:g}", (chosen, 1), xycoords=("data", "axes fraction"), ha="left", va="top", fontsize=8)
        ax.set_xscale("log")
        ax.set(xlabel="learning rate (AdamW)", ylabel=f"bits per byte after {k} neighbours", title=f"{model}: rate chosen on held-out documents")
        ax.legend(fontsize=7, title="dotted: before TTT", title_fontsize=7)
    fig.tight_layout()
    return fig
