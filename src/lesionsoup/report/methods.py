"""Method comparison (single, ensemble, SWA, soups) and what each costs for what it gains
(the costs: ``lesionsoup.evaluation.costs``)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from lesionsoup.core.atomic import write_csv
from lesionsoup.core.figures import (
    PAGE_WIDTH,
    AxisRange,
    data_range,
    figure_size,
    panel_figure_size,
    panel_grid,
    save_figure,
)
from lesionsoup.core.methods import SINGLE
from lesionsoup.core.metrics import metric_label
from lesionsoup.evaluation.costs import read_costs
from lesionsoup.evaluation.evaluate import read_metrics
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.evaluation.statistics import finite_mean, holm, shifted_null_p_value
from lesionsoup.evaluation.uncertainty import BASELINE, MEAN_OVER_LESIONS
from lesionsoup.report.intervals import read_replicates, replicate_errors
from lesionsoup.report.tables import model_scores, ordered_methods, with_metric

#: What a row of the method tables is about.
KEYS = ["train_combo", "test_dataset", "method"]
#: (combination, test set, method) -> its models.
Models = Mapping[tuple[str, str, str], list[str]]


def method_table(metrics: pd.DataFrame, metric: str = "ap") -> pd.DataFrame:
    """Per (combination, test set, method): mean, sd and count of the models' scores, and best."""
    scores = model_scores(metrics, metric)
    grouped = scores.groupby(KEYS)["score"]
    table = grouped.agg(["mean", "std", "count", "max"]).reset_index()
    return table.rename(columns={"count": "models", "max": "best"})


def method_models(metrics: pd.DataFrame, metric: str = "ap") -> Models:
    """(combination, test set, method) -> its models scored on that test set, sorted."""
    scores = model_scores(metrics, metric)
    return {key: sorted(models) for key, models in scores.groupby(KEYS)["model"]}


def _resampled(replicates: Replicates, models: list[str], test: str) -> np.ndarray:
    """Each resample's mean over ``models`` of their mean over lesions on one test set."""
    return replicates.mean_of(models, test, MEAN_OVER_LESIONS)


def gain_resamples(
    replicates: Replicates, models: Models, key: tuple[str, str, str]
) -> tuple[np.ndarray, float]:
    """A method's gain over the single models of its (combination, test set): each
    resample's mean over its models minus that over the single models, and the same
    difference of the whole-set values."""
    combo, test, method = key
    own, single = models[key], models[(combo, test, SINGLE)]
    resampled = _resampled(replicates, own, test) - _resampled(replicates, single, test)
    estimate = replicates.estimate_of(own, test, MEAN_OVER_LESIONS) - replicates.estimate_of(
        single, test, MEAN_OVER_LESIONS
    )
    return resampled, estimate


def seed_noise_table(
    metrics: pd.DataFrame, metric: str = "ap", replicates: Replicates | None = None
) -> pd.DataFrame:
    """Per (combination, test set, method): its gain over the single models' mean, against
    the spread of the single models across seeds (``seed_sd``, with >= 2 seeds).

    ``beyond_seed_noise`` says whether the gain exceeds twice that spread: a difference
    smaller than the seeds' own would vanish on another draw of seeds. ``low`` and
    ``high`` bound the gain's bootstrap interval over the test images (NaN without
    ``replicates``).
    """
    scores = model_scores(metrics, metric)
    single = scores[scores["method"] == SINGLE].groupby(KEYS[:2])["score"]
    spread = single.agg(["mean", "std", "count"]).rename(
        columns={"mean": "single_mean", "std": "seed_sd", "count": "seeds"}
    )
    spread = spread[spread["seeds"] >= 2]
    methods = method_table(metrics, metric)
    joined = methods[methods["method"] != SINGLE].join(spread, on=KEYS[:2], how="inner")
    joined["gain"] = joined["mean"] - joined["single_mean"]
    keys = list(zip(*(joined[key] for key in KEYS), strict=True))
    models = method_models(metrics, metric)
    bounds = [
        replicates.interval(gain_resamples(replicates, models, key)[0])
        if replicates is not None
        else (np.nan, np.nan)
        for key in keys
    ]
    joined["low"] = [low for low, _ in bounds]
    joined["high"] = [high for _, high in bounds]
    joined["gain_over_seed_sd"] = joined["gain"] / joined["seed_sd"]
    joined["beyond_seed_noise"] = joined["gain"].abs() > 2 * joined["seed_sd"]
    columns = [*KEYS, "seeds", "seed_sd", "gain", "low", "high"]
    return joined[[*columns, "gain_over_seed_sd", "beyond_seed_noise"]].reset_index(drop=True)


def cost_gain_table(
    metrics: pd.DataFrame,
    costs: pd.DataFrame,
    replicates: Replicates,
    metric: str = "ap",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per method: score gained over the single models, and compute spent.

    A method's gain is the mean, over the (combination, test set) pairs that have
    single models, of its models' mean score minus the single models' mean score
    there (whole-set values of ``replicates``); ``low``/``high`` its bootstrap interval
    (the same mean over pairs of each resample: a bootstrap stratified by test set),
    ``p_value`` two-sided from that distribution shifted to the null, ``p_holm``
    Holm's adjustment over the methods other than single, ``significant`` below
    ``alpha``. ``compute_seconds`` is the method's mean compute per model, ``source`` where
    its training and merging seconds come from (``measured``, ``sidecar``, or both joined
    by ``/`` where its models differ).
    """
    models = method_models(metrics, metric)
    if not any(method == SINGLE for _, _, method in models):
        raise ValueError("the metrics table has no single models to compare with")
    rows = []
    for method in ordered_methods(method for _, _, method in models):
        pairs = [key for key in models if key[2] == method and (key[0], key[1], SINGLE) in models]
        if not pairs:
            continue
        gains = [gain_resamples(replicates, models, key) for key in pairs]
        resampled = finite_mean(np.stack([resampled for resampled, _ in gains]))
        gain = float(finite_mean(np.array([[estimate] for _, estimate in gains]))[0])
        p_value = np.nan if method == SINGLE else shifted_null_p_value(resampled, gain)
        rows.append((method, gain, *replicates.interval(resampled), p_value, len(pairs)))
    table = pd.DataFrame(rows, columns=["method", "gain", "low", "high", "p_value", "pairs"])
    table.insert(5, "p_holm", holm(list(table["p_value"])))
    table.insert(6, "significant", table["p_holm"] < alpha)
    by_method = costs.groupby("method")
    compute = by_method["compute_seconds"].mean().rename("compute_seconds")
    source = by_method["source"].agg(lambda sources: "/".join(sorted(set(sources))))
    return table.join(compute, on="method", how="left").join(source, on="method", how="left")


def method_errors(
    metrics: pd.DataFrame, replicates: Replicates, comparisons: pd.DataFrame, metric: str = "ap"
) -> pd.DataFrame:
    """``method_table`` with each bar's bootstrap interval (``low``, ``high``), its error
    bar (``below``, ``above``) and significance mark.

    The interval is that of the bar's value, the mean over the method's models there
    of their mean over lesions: the percentile interval of that mean on each resample.
    A method with one model there gets a mark where that model's paired comparison with
    the single-model baseline is significant after Holm (``comparisons.csv``).
    """
    table = method_table(metrics, metric)
    models = method_models(metrics, metric)
    keys = list(zip(*(table[key] for key in KEYS), strict=True))
    bounds = [replicates.interval(_resampled(replicates, models[key], key[1])) for key in keys]
    table["low"] = [low for low, _ in bounds]
    table["high"] = [high for _, high in bounds]
    # the interval's ends need not straddle the bar (metrics.csv's value, the full bins; the
    # resamples, the per-image groups of bins, exact only while they hold every lesion bin)
    table["below"] = np.maximum(table["mean"] - table["low"], 0)
    table["above"] = np.maximum(table["high"] - table["mean"], 0)
    baseline = comparisons["comparison"] == BASELINE  # not the named pairs
    mean_rows = comparisons[baseline & (comparisons["lesion"] == MEAN_OVER_LESIONS)]
    marked = mean_rows[mean_rows["significant"].astype(bool)]
    pairs = zip(marked["model"], marked["test_dataset"], strict=True)
    significant = {(str(Path(model)), test) for model, test in pairs}
    table["significant"] = [
        len(models[key]) == 1 and (str(Path(models[key][0])), key[1]) in significant for key in keys
    ]
    return table


HATCHES = ["", "//", "..", "xx", "\\\\", "oo", "--", "++", "**"]


def _draw_bars(
    ax: plt.Axes, own: pd.DataFrame, combos: list[str], methods: list[str], lift: float
) -> None:
    """One test set's bars: each method's combinations, error bars and significance marks
    (``lift`` above the bar's error bar)."""
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.95, len(methods)))
    width = 0.85 / len(methods)
    for index, method in enumerate(methods):
        rows = own.reindex([(combo, method) for combo in combos])
        x = np.arange(len(combos)) + (index - (len(methods) - 1) / 2) * width
        ax.bar(
            x,
            rows["mean"],
            width,
            yerr=np.vstack([rows["below"], rows["above"]]),
            color=colours[index],
            hatch=HATCHES[index % len(HATCHES)],
            edgecolor="black",
            linewidth=0.5,
            capsize=2,
            error_kw={"elinewidth": 0.6, "capthick": 0.6},
            label=method,
        )
        for position, row in zip(x, rows.itertuples(), strict=True):
            if row.significant is True:
                top = row.mean + (0 if np.isnan(row.above) else row.above)
                ax.text(position, top + lift, "*", ha="center", va="bottom", fontsize=9)


def combo_keys(combos: Iterable[str]) -> dict[str, str]:
    """A short key per training combination (``A``, ``B``, ...; ``AA`` after ``Z``): the
    x labels of a figure whose full names would overlap, spelled out in its axis label."""
    keys = {}
    for index, combo in enumerate(combos):
        key = ""
        index += 1
        while index:
            index, rest = divmod(index - 1, 26)
            key = chr(ord("A") + rest) + key
        keys[combo] = key
    return keys


def empty_test_sets(table: pd.DataFrame, tests: Iterable[str] = ()) -> list[str]:
    """The test sets of ``tests`` (the configured ones) or of ``method_errors``'s table
    without a single score: no test images, or none evaluated."""
    finite = table[np.isfinite(table["mean"].astype(float))]
    return sorted((set(table["test_dataset"]) | set(tests)) - set(finite["test_dataset"]))


def empty_note(empty: Iterable[str]) -> str:
    """The caption sentence naming test sets drawn without a panel; empty if none."""
    names = sorted(empty)
    if not names:
        return ""
    sets = "test set" if len(names) == 1 else "test sets"
    verb = "has" if len(names) == 1 else "have"
    return f"No panel: {sets} {', '.join(names)} {verb} no test images (no scores)."


@dataclass(frozen=True)
class MethodFigure:
    """What ``plot_method_comparison`` drew: ``method_errors``'s table (every test set,
    the empty ones' rows NaN), the test sets left without a panel, and the caption text
    the figure carries (its scale, and the empty test sets named)."""

    table: pd.DataFrame
    empty: list[str]
    caption: str


def plot_method_comparison(
    metrics: pd.DataFrame,
    replicates: Replicates,
    comparisons: pd.DataFrame,
    out: Path,
    metric: str = "ap",
    tests: Iterable[str] = (),
) -> MethodFigure:
    """Per test set, each combination's methods as bars with their bootstrap intervals
    and significance marks (``method_errors``).

    The panels lie in a grid as wide as the page, sharing one value axis scaled to the
    data (``data_range``: 0 to the highest error bar, rounded up; 0-1 when that is above
    0.6). A test set without scores (``empty_test_sets``; ``tests``: the configured ones)
    gets no panel: the note under the figure, and the returned caption, name it.
    """
    table = method_errors(metrics, replicates, comparisons, metric)
    empty = empty_test_sets(table, tests)
    shown = sorted(set(table["test_dataset"]) - set(empty))
    if not shown:
        raise ValueError(f"no test set has {metric} scores to compare methods on")
    combos = sorted(table["train_combo"].unique())
    methods = ordered_methods(table["method"])
    fig, axes = _method_grid(len(shown), len(methods), len(combos))
    drawn = table[table["test_dataset"].isin(shown)]
    scale = data_range([*drawn["mean"], *(drawn["mean"] + drawn["above"].fillna(0))], pad=0.12)
    label = metric_label(metric)
    for ax, test in zip(axes.flat, shown, strict=False):
        own = table[table["test_dataset"] == test].set_index(["train_combo", "method"])
        _draw_bars(ax, own, combos, methods, 0.01 * (scale.high - scale.low))
        ax.set_title(f"test {test}")
        ax.set_ylim(*scale.limits)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(shown) :]:
        ax.remove()
    _label_method_axes(fig, axes.flat[: len(shown)], combos, label, scale)
    note = empty_note(empty)
    caption = _method_caption(label, replicates, scale, note)
    fig.suptitle(_method_title(label, replicates, note), fontsize="medium")
    save_figure(fig, out, tight=False)
    return MethodFigure(table, empty, caption)


def _method_grid(panels: int, methods: int, combos: int) -> tuple[plt.Figure, np.ndarray]:
    """The figure and its grid of ``panels`` panels, each wide enough for ``methods`` bars
    per each of ``combos`` combinations, sharing both axes."""
    rows, columns = panel_grid(panels, PAGE_WIDTH, 0.5 + 0.12 * methods * combos)
    return plt.subplots(
        rows,
        columns,
        figsize=panel_figure_size(rows, columns, extra=1.9),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )


def _label_method_axes(
    fig: plt.Figure, panels: np.ndarray, combos: list[str], label: str, scale: AxisRange
) -> None:
    """Each panel's combination keys, the value and combination axis labels (the keys
    spelled out), and the method legend."""
    keys = combo_keys(combos)
    for ax in panels:
        ax.set_xticks(range(len(combos)), [keys[c] for c in combos])
    axis = f"{label}, mean over lesions" + (f"\n({scale.note})" if scale.note else "")
    fig.supylabel(axis, fontsize="medium")
    key = "; ".join(f"{keys[c]} = {c}" for c in combos)
    fig.supxlabel(f"training combination: {textwrap.fill(key, 110)}", fontsize="small")
    fig.legend(
        *panels[0].get_legend_handles_labels(),
        loc="outside right upper",
        title="method",
        frameon=False,
    )


def _method_caption(label: str, replicates: Replicates, scale: AxisRange, note: str) -> str:
    """The caption of the method comparison: what the bars and marks are, the scaled axis,
    then ``note`` (the test sets without a panel)."""
    caption = (
        f"Methods compared: {label}, mean over lesions (error bars: "
        f"{replicates.confidence:.0%} bootstrap interval over test images; *: differs from "
        "the single-model baseline, paired bootstrap, Holm)"
    )
    caption += f"; {scale.note}, {scale.low:g} to {scale.high:g}." if scale.note else "."
    return f"{caption} {note}".strip()


def _method_title(label: str, replicates: Replicates, note: str) -> str:
    """The title over the method comparison, ``note`` on its last line."""
    return (
        f"Methods compared: {label}, mean over lesions\n(error bars: "
        f"{replicates.confidence:.0%} bootstrap interval over test images;\n*: differs from "
        "the single-model baseline, paired bootstrap, Holm)" + (f"\n{note}" if note else "")
    )


def plot_cost_gain(table: pd.DataFrame, out: Path, metric: str = "ap") -> None:
    """``cost_gain_table``: each method's gain over the single models, with its interval,
    against compute seconds; a star by the name of a significant gain."""
    fig, ax = plt.subplots(figsize=figure_size(3.6))
    markers = "osD^v<>pP*"
    for index, row in table.reset_index(drop=True).iterrows():
        below, above = max(row["gain"] - row["low"], 0), max(row["high"] - row["gain"], 0)
        ax.errorbar(
            row["compute_seconds"],
            row["gain"],
            yerr=[[below], [above]],
            marker=markers[index % len(markers)],
            color="black",
            markerfacecolor="white" if index % 2 else "black",
            linestyle="none",
            capsize=3,
            label=row["method"] + (" *" if row["significant"] else ""),
        )
    ax.axhline(0, color="0.5", linewidth=0.8, linestyle="--")
    if (table["compute_seconds"] > 0).all():
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15)
    # a legend, not labels beside the points: methods of similar cost and gain overlap
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    sources = "/".join(sorted(set("/".join(table["source"].dropna()).split("/")) - {""}))
    ax.set_xlabel(f"compute per model (s): training + merging + inference [{sources}]")
    ax.set_ylabel(f"{metric_label(metric)} gained over\nthe single models (mean over pairs)")
    ax.set_title(
        "Cost vs gain of each method\n(bootstrap interval over test images; *: significant, Holm)",
        fontsize="medium",
    )
    ax.grid(alpha=0.3)
    save_figure(fig, out)


NO_SEEDS = "no recipe has two or more seeds:\nseed noise cannot be separated"
NO_SPREAD = "the seeds of every recipe score the same:\nno spread to measure gains against"


def _draw_seed_noise(ax: plt.Axes, table: pd.DataFrame) -> None:
    """Per method, one point per (combination, test set): the gain in units of the seeds'
    sd, with its bootstrap interval; filled where it lies beyond the ±2 sd band."""
    methods = ordered_methods(table["method"])
    tests = sorted(table["test_dataset"].unique())
    colours = dict(zip(tests, plt.get_cmap("tab10")(np.arange(len(tests)) % 10), strict=True))
    ax.axhspan(-2, 2, color="0.88", zorder=0, label="within ±2 sd of the seeds")
    ax.axhline(0, color="0.4", linewidth=0.8)
    for index, method in enumerate(methods):
        own = table[table["method"] == method].reset_index(drop=True)
        step = min(0.6 / max(len(own), 1), 0.15)
        for rank, row in own.iterrows():
            x = index + (rank - (len(own) - 1) / 2) * step
            colour = colours[row["test_dataset"]]
            ax.vlines(x, row["low"] / row["seed_sd"], row["high"] / row["seed_sd"], colors=[colour])
            ax.plot(
                x,
                row["gain_over_seed_sd"],
                "o",
                color=colour,
                markerfacecolor=colour if row["beyond_seed_noise"] else "white",
            )
    for test, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=f"test {test}")
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -3), max(high, 3))  # the band's edges in view
    ax.set_xticks(range(len(methods)), methods)
    ax.set_xlabel("method (filled: gain beyond seed noise)")
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))


def plot_seed_noise(table: pd.DataFrame, out: Path, metric: str = "ap") -> None:
    """``seed_noise_table`` as a figure, or a figure saying that no recipe has seeds."""
    fig, ax = plt.subplots(figsize=figure_size(3.4))
    shown = table[np.isfinite(table["gain_over_seed_sd"].astype(float))]
    if shown.empty:
        message = NO_SEEDS if table.empty else NO_SPREAD
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        _draw_seed_noise(ax, shown)
    ax.set_ylabel("gain over the single models' mean\n/ their sd across seeds")
    ax.set_title(
        f"Method gains against seed noise: {metric_label(metric)}\n(line: bootstrap "
        "interval over test images, in the same units)",
        fontsize="medium",
    )
    save_figure(fig, out)


def significance_table(comparisons: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The comparisons of the mean over lesions, significant ones first; ``comparison``:
    ``baseline`` or the name of a configured pair."""
    table = comparisons[comparisons["lesion"] == MEAN_OVER_LESIONS]
    columns = ["comparison", "metric", "train_combo", "method", "test_dataset"]
    columns += ["difference", "low", "high"]
    table = table[[*columns, "p_holm", "significant"]].copy()
    table["significant"] = np.where(table["significant"], f"yes (p < {alpha:g})", "no")
    return table.sort_values(["significant", "p_holm"], ascending=[False, True])


@dataclass(frozen=True)
class MethodOutputs:
    """Where ``report_methods`` writes; each figure's table goes beside it (``.csv``),
    except the seed-noise table, which has its own path."""

    comparison: Path | str
    cost_gain: Path | str
    significance: Path | str
    seed_noise: Path | str
    seed_noise_figure: Path | str


def report_methods(
    metrics_csv: Path | str,
    costs_csv: Path | str,
    replicates_npz: Path | str,
    comparisons_csv: Path | str,
    outputs: MethodOutputs,
    metric: str = "ap",
    alpha: float = 0.05,
    tests: Iterable[str] = (),
) -> None:
    """The method comparison, cost-vs-gain and seed-noise figures, each with its table,
    and the significance table of the comparisons; ``tests``: the configured test sets,
    those without scores named under the method comparison instead of a panel."""
    metrics = read_metrics(Path(metrics_csv))
    replicates = read_replicates(replicates_npz, metric)
    comparisons = pd.read_csv(comparisons_csv)
    write_csv(significance_table(comparisons, alpha), Path(outputs.significance))
    with replicate_errors(replicates_npz):
        seeds = seed_noise_table(metrics, metric, replicates)
        table = plot_method_comparison(
            metrics, replicates, comparisons, Path(outputs.comparison), metric, list(tests)
        ).table
        gains = cost_gain_table(metrics, read_costs(Path(costs_csv)), replicates, metric, alpha)
    write_csv(with_metric(seeds, metric), Path(outputs.seed_noise))
    plot_seed_noise(seeds, Path(outputs.seed_noise_figure), metric)
    write_csv(with_metric(table, metric), Path(outputs.comparison).with_suffix(".csv"))
    plot_cost_gain(gains, Path(outputs.cost_gain), metric)
    write_csv(with_metric(gains, metric), Path(outputs.cost_gain).with_suffix(".csv"))
