"""The ``claims`` figure: one row per claim, its paired difference with the 95% bootstrap interval and a line
at 0, so a reader sees at a glance which of the paper's claims the run separates from no effect."""

from __future__ import annotations

import pandas as pd

from tttnn.report.plots import plt, sns
from tttnn.report.summarize import PILE_ROW

SEPARATED, NOT_SEPARATED = "tab:green", "tab:gray"
CLIP = 2.0  # the gap panel's x range: shares beyond +-200% (or infinite: no gap) are drawn at its edge
GAP_CLAIMS = ("f", "g(f)")  # claims whose value is the share of the gap closed, not a difference in bpb
KEY = ["claim", "description", "model"]  # one claim: its task rows and its Pile-weighted row share these


def _label(row: pd.Series, several_models: bool) -> str:
    """The row's label: claim id, what is compared, the model when there are several, the task unless Pile."""
    what = f"{row['method_a']} vs {row['method_b']}"
    model = f"{row['model']}: " if several_models and not str(row["method_a"]).startswith(str(row["model"])) else ""
    task = "" if row["task"] == PILE_ROW else f" [{row['task']}]"
    claim = row["claim"] if "(" in str(row["claim"]) else f"({row['claim']})"
    return f"{claim} {model}{what}{task}"


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its Pile-weighted row where it has one, else each of its task rows."""
    out = []
    for _, g in table.groupby(KEY, sort=False, dropna=False):
        pile = g[g["task"] == PILE_ROW]
        out.append(pile if len(pile) else g)
    return pd.concat(out) if out else table


def _panel(ax: plt.Axes, table: pd.DataFrame, shown: pd.DataFrame, y: str, lo: str, hi: str, xlabel: str) -> None:
    """Error bars of ``y`` with [lo, hi] per shown row, per-task point estimates as small dots, a line at 0."""
    several = table["model"].nunique() > 1
    shown = shown.copy()
    for col in (y, lo, hi):  # a share of a gap that does not exist is +-inf: drawn at the edge, labelled so
        shown[col] = shown[col].clip(-CLIP, CLIP) if y == "gap_closed" else shown[col]
    labels = [_label(r, several) for _, r in shown.iterrows()]
    for i, (_, r) in enumerate(shown.iterrows()):
        color = SEPARATED if r["separated"] else NOT_SEPARATED
        if pd.notna(r[lo]) and pd.notna(r[hi]):
            ax.errorbar(r[y], i, xerr=[[r[y] - r[lo]], [r[hi] - r[y]]], fmt="o", color=color, capsize=3, lw=1.5, ms=5)
        else:
            ax.plot(r[y], i, "o", color=color, ms=5, mfc="none")
        if r["task"] == PILE_ROW:  # the tasks behind the weighted value
            same = table[(table[KEY] == r[KEY]).all(axis=1) & (table["task"] != PILE_ROW)]
            dots = same[y].clip(-CLIP, CLIP) if y == "gap_closed" else same[y]
            ax.plot(dots, [i] * len(dots), ".", color="black", alpha=0.35, ms=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel(xlabel)


def claims_figure(table: pd.DataFrame) -> plt.Figure:
    """Top: bpb(A) - bpb(B) per claim (the paper says < 0); below: the share of the gap to the larger model
    closed by TTT (the paper says > 0); green where the 95% paired interval excludes 0 that way."""
    sns.set_theme(style="whitegrid", context="notebook")
    is_gap = table["claim"].isin(GAP_CLAIMS)
    diff, gap = table[~is_gap], table[is_gap]
    panels = [(p, s) for p, s in ((diff, _shown(diff)), (gap, _shown(gap))) if len(s)]
    if not panels:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no claim has its inputs in this run", ha="center", va="center")
        ax.set_axis_off()
        return fig
    heights = [len(s) for _, s in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(10, 1.2 + 0.38 * sum(heights) + 0.6 * len(panels)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (t, s) in zip(axes[:, 0], panels):
        if t is gap:
            _panel(
                ax,
                t,
                s,
                "gap_closed",
                "gap_lo",
                "gap_hi",
                "share of the gap to the larger model closed by TTT\n(drawn within +-200%)",
            )
            ax.axvline(1, color="black", lw=0.6, ls=":")
        else:
            _panel(ax, t, s, "diff", "lo", "hi", "bpb(A) - bpb(B), A vs B as labelled (negative: A is better)")
    k_note = "95% paired bootstrap intervals over documents; green: the interval excludes 0 in the paper's direction"
    fig.suptitle(f"The paper's claims, paired: {k_note}", fontsize=9)
    fig.tight_layout()
    return fig
