"""When does weight averaging work: the gain figure, the verdict table and the barrier figure.

``plot_gains`` draws each merged model's gain over the mean of its own ingredients
(``analysis.averaging.gain_table``: the headline metric averaged over lesions and over the
test sets, with its bootstrap interval), one panel per start (rows) and part (columns), the
rules along x, one colour per training-set fraction and one marker per BatchNorm policy; a
star marks a gain whose Holm-adjusted p-value is below the study's alpha. ``verdicts`` is
the table the summary quotes: per condition, the gain over the ingredients and over the
ensemble of the same models, what each says, and what the merged model costs at inference
against that ensemble. ``plot_barriers`` draws the linear-mode-connectivity barriers of the
configured pairs (``analysis.connectivity.barrier``), grouped by the part that moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lesionsoup.analysis.averaging import ALL_TESTS, CONDITION, MergedModel, gain_table
from lesionsoup.analysis.connectivity import barrier
from lesionsoup.core.atomic import write_csv
from lesionsoup.core.figures import PAGE_WIDTH, figure_size, save_figure
from lesionsoup.core.merge_rules import PARTS, RULES
from lesionsoup.core.metrics import metric_label
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.evaluation.uncertainty import MEAN_OVER_LESIONS

#: The markers of the BatchNorm policies, in ``core.merge_rules.BN_POLICIES`` order.
_MARKERS = {"average": "o", "recompute": "s", "copy-best": "^"}
VERDICT_COLUMNS = (
    "train_combo", "soup", *CONDITION, "models", "gain", "low", "high", "verdict",
    "gain_vs_ensemble", "low_vs_ensemble", "high_vs_ensemble", "verdict_vs_ensemble",
    "inference_passes", "ensemble_passes",
)  # fmt: skip


def headline(table: pd.DataFrame, versus: str) -> pd.DataFrame:
    """The rows a figure and the verdicts read: all test sets, mean over lesions."""
    chosen = (
        (table["versus"] == versus)
        & (table["test_dataset"] == ALL_TESTS)
        & (table["lesion"] == MEAN_OVER_LESIONS)
    )
    return table[chosen]


def _rule_order(rules: Sequence[str]) -> list[str]:
    known = [rule for rule in RULES if rule in set(rules)]
    return known + sorted(set(rules) - set(known))


def plot_gains(table: pd.DataFrame, out: Path) -> None:
    """The gain figure (module docstring)."""
    rows = headline(table, "ingredients")
    if rows.empty:
        raise ValueError("no merged model has evaluated ingredients to compare with")
    starts = sorted(rows["start"].unique())
    parts = [part for part in PARTS if part in set(rows["part"])]
    rules = _rule_order(rows["rule"].unique())
    fractions = sorted(rows["fraction"].unique())
    colours = dict(
        zip(fractions, plt.get_cmap("viridis")(np.linspace(0.1, 0.8, len(fractions))), strict=True)
    )
    fig, axes = plt.subplots(
        len(starts), len(parts), figsize=figure_size(1.9 * len(starts) + 0.9, PAGE_WIDTH),
        sharex=True, sharey=True, squeeze=False,
    )  # fmt: skip
    offsets = _offsets(sorted(rows["bn_policy"].unique()), fractions)
    for (i, start), (j, part) in ((a, b) for a in enumerate(starts) for b in enumerate(parts)):
        ax = axes[i][j]
        own = rows[(rows["start"] == start) & (rows["part"] == part)]
        # several models of one condition (SWA: one a seed) side by side, not on one another
        nth = own.groupby(["rule", "bn_policy", "fraction"]).cumcount()
        for index, row in own.iterrows():
            x = rules.index(row["rule"]) + offsets[row["bn_policy"], row["fraction"]]
            x += 0.03 * nth[index]
            # a percentile interval need not hold its estimate (few images): no negative bar
            below, above = row["gain"] - row["low"], row["high"] - row["gain"]
            err = [
                [max(0.0, below) if below == below else 0.0],
                [max(0.0, above) if above == above else 0.0],
            ]
            ax.errorbar(
                x, row["gain"], yerr=err, fmt=_MARKERS.get(row["bn_policy"], "D"),
                color=colours[row["fraction"]], markersize=4, capsize=2, linewidth=1,
            )  # fmt: skip
            if row["significant"]:
                ax.annotate("*", (x, row["high"]), ha="center", va="bottom", fontsize=9)
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_title(f"{start} start, {part}", fontsize="medium")
        ax.set_visible(not own.empty)  # a condition the study has no merged model of
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat:  # on every panel: the one below may be hidden
        ax.set_xticks(range(len(rules)), rules, rotation=30, ha="right")
        ax.tick_params(labelbottom=True)
    metric = metric_label(str(table["metric"].iloc[0]))
    for row_axes in axes:
        row_axes[0].set_ylabel(f"gain in {metric}\nover ingredients' mean")
    _legend(fig, colours, sorted(rows["bn_policy"].unique()))
    fig.suptitle(
        f"Gain of {len(rows)} merged models over the mean of their ingredients "
        "(* Holm-adjusted significant; axes scaled to the data)",
        fontsize="medium",
    )
    save_figure(fig, out, tight=False)


def _offsets(policies: Sequence[str], fractions: Sequence[float]) -> dict[tuple[str, float], float]:
    """A small x offset per (BatchNorm policy, fraction), so that no two points overlap."""
    pairs = [(policy, fraction) for policy in policies for fraction in fractions]
    spread = np.linspace(-0.15, 0.15, len(pairs)) if len(pairs) > 1 else [0.0]
    return dict(zip(pairs, spread, strict=True))


def _legend(fig: plt.Figure, colours: Mapping[float, object], policies: Sequence[str]) -> None:
    handles = [
        plt.Line2D(
            [],
            [],
            color=colour,
            marker="o",
            linestyle="",
            label=f"{fraction:.0%} of the training set",
        )
        for fraction, colour in colours.items()
    ] + [
        plt.Line2D(
            [],
            [],
            color="0.3",
            marker=_MARKERS.get(policy, "D"),
            linestyle="",
            label=f"BatchNorm {policy}",
        )
        for policy in policies
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))  # rows for the legend below and the title above


def _verdict(low: float, high: float) -> str:
    if np.isnan(low) or np.isnan(high):
        return "no interval"
    return "better" if low > 0 else "worse" if high < 0 else "no difference"


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Per condition: gain over the ingredients and over their ensemble, each with its
    interval and verdict (``better``/``worse`` when the interval excludes 0), and the forward
    passes of one prediction (a merged model 1, the ensemble one per member)."""
    own, ensemble = headline(table, "ingredients"), headline(table, "ensemble")
    keys = ["model"]
    joined = own.merge(
        ensemble[[*keys, "gain", "low", "high"]], on=keys, how="left", suffixes=("", "_vs_ensemble")
    )
    joined["models"] = joined["references"]
    joined["verdict"] = [
        _verdict(lo, hi) for lo, hi in zip(joined["low"], joined["high"], strict=True)
    ]
    joined["verdict_vs_ensemble"] = [
        _verdict(lo, hi)
        for lo, hi in zip(joined["low_vs_ensemble"], joined["high_vs_ensemble"], strict=True)
    ]
    joined["inference_passes"] = 1
    joined["ensemble_passes"] = joined["references"].where(joined["gain_vs_ensemble"].notna())
    return joined[list(VERDICT_COLUMNS)].sort_values(list(CONDITION)).reset_index(drop=True)


def averaging_notes(table: pd.DataFrame) -> str:
    """What the verdict table (``verdicts``) says, in words, for the summary."""
    lines = []
    for column, against in (
        ("verdict", "the mean of its ingredients"),
        ("verdict_vs_ensemble", "the ensemble of the same models"),
    ):
        counted = table[column].dropna()
        counted = counted[counted != "no interval"]
        if counted.empty:
            continue
        better = table.loc[counted.index][counted == "better"]
        named = ", ".join(better["soup"].astype(str)) or "none"
        lines.append(
            f"- Against {against}: better in {len(better)} of {len(counted)} merged models "
            f"({named}), worse in {int((counted == 'worse').sum())}, no difference in "
            f"{int((counted == 'no difference').sum())}."
        )
    return "\n".join(lines) or "No merged model has an interval against its ingredients."


def barrier_table(curves: Mapping[str, pd.DataFrame], parts: Mapping[str, str]) -> pd.DataFrame:
    """Score and loss barriers of each pair's curve (``bn_policy``, ``lam``, score, loss)."""
    rows = [
        {
            "pair": pair,
            "part": parts[pair],
            "bn_policy": policy,
            "score_barrier": barrier(curve),
            "loss_barrier": barrier(curve, "loss", higher_is_better=False),
        }
        for pair, table in curves.items()
        for policy, curve in table.groupby("bn_policy", sort=False)
    ]
    return pd.DataFrame(rows)


def plot_barriers(table: pd.DataFrame, out: Path) -> None:
    """Score (left) and loss (right) barriers, one bar per pair and BatchNorm policy, pairs
    grouped by the part that moves."""
    order = table.sort_values(
        ["part", "pair"], key=lambda c: c.map(_part_rank) if c.name == "part" else c
    )
    pairs = list(dict.fromkeys(order["pair"]))
    policies = list(dict.fromkeys(order["bn_policy"]))
    fig, axes = plt.subplots(
        1, 2, figsize=figure_size(0.32 * len(pairs) + 1.6, PAGE_WIDTH), sharey=True
    )
    height = 0.8 / len(policies)
    for ax, column, label in zip(
        axes,
        ("score_barrier", "loss_barrier"),
        ("score barrier (drop)", "loss barrier (rise)"),
        strict=True,
    ):
        for k, policy in enumerate(policies):
            values = order[order["bn_policy"] == policy].set_index("pair")[column].reindex(pairs)
            ax.barh(np.arange(len(pairs)) + k * height, values, height, label=f"BatchNorm {policy}")
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    labels = [f"{pair} ({order.loc[order['pair'] == pair, 'part'].iloc[0]})" for pair in pairs]
    axes[0].set_yticks(np.arange(len(pairs)) + 0.4 - height / 2, labels)
    axes[0].invert_yaxis()
    axes[1].legend(frameon=False, loc="lower right")
    fig.suptitle("Linear mode connectivity barriers (0: no barrier)", fontsize="medium")
    save_figure(fig, out)


def _part_rank(part: str) -> int:
    return PARTS.index(part) if part in PARTS else len(PARTS)


def report_averaging(
    replicates: Path | str,
    conditions: Sequence[Mapping[str, object]],
    alpha: float,
    gains_csv: Path | str,
    verdicts_csv: Path | str,
    figure: Path | str,
) -> None:
    """The averaging stage: the gain table, its verdicts and the gain figure."""
    models = [MergedModel.from_record(record) for record in conditions]
    table = gain_table(models, Replicates.load(replicates), alpha)
    write_csv(table, Path(gains_csv))
    write_csv(verdicts(table), Path(verdicts_csv))
    plot_gains(table, Path(figure))


def report_barriers(
    curves: Mapping[str, Path | str],
    parts: Mapping[str, str],
    table_csv: Path | str,
    figure: Path | str,
) -> None:
    """The barrier stage: each connectivity pair's barriers, as a table and a figure."""
    table = barrier_table({pair: pd.read_csv(path) for pair, path in curves.items()}, parts)
    write_csv(table, Path(table_csv))
    plot_barriers(table, Path(figure))
