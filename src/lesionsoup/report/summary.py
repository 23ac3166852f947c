"""``summary.md``: the study's main tables in one Markdown file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.methods import SINGLE
from lesionsoup.core.metrics import metric_label
from lesionsoup.report.averaging import averaging_notes
from lesionsoup.report.tables import markdown_table, ordered_methods

#: The sections of the study's ``summary.md``, in order: the name of the table's input
#: (in ``rule summary``) -> its title.
SECTIONS = {
    "heatmap": "Cross-dataset scores (per lesion)",
    "fine_coarse": "Fine vs coarse training data",
    "cost_gain": "Cost vs gain per method (gain over the single models, bootstrap interval, Holm)",
    "styles": "Annotation-style clusters",
    "methods": "Methods per combination and test set",
    "significance": (
        "Each model against its combination's single-model baseline, and the configured "
        "pairs, mean over lesions (paired bootstrap over test images, Holm-adjusted)"
    ),
    "seed_noise": "Method gains against seed noise (the single models' spread across seeds)",
    "averaging": (
        "When weight averaging works: each merged model against the mean of its ingredients "
        "and against their ensemble, mean over lesions and test sets (paired bootstrap)"
    ),
}


def gain_notes(table: pd.DataFrame) -> str:
    """Per method of ``cost_gain.csv``: its gain, interval and whether it is significant."""
    lines = []
    for row in table[table["method"] != SINGLE].itertuples():
        verdict = "significant" if row.significant else "not significant"
        lines.append(
            f"- {row.method}: {row.gain:+.3f} (bootstrap interval {row.low:+.3f} to "
            f"{row.high:+.3f}), Holm-adjusted p = {row.p_holm:.3g}: {verdict}"
        )
    return "\n".join(lines)


def seed_noise_notes(table: pd.DataFrame) -> str:
    """Per method of ``seed_noise.csv``: in how many (combination, test set) pairs its
    gain exceeds twice the spread of the single models across seeds."""
    if table.empty:
        return (
            "No recipe has two or more seeds: seed noise cannot be separated from the "
            "differences between methods."
        )
    lines = []
    for method in ordered_methods(table["method"]):
        beyond = table.loc[table["method"] == method, "beyond_seed_noise"].astype(bool)
        verdict = "yes" if beyond.all() else "no" if not beyond.any() else "partly"
        lines.append(
            f"- {method}: {verdict}, gain beyond 2 sd of the seeds in {int(beyond.sum())} "
            f"of {len(beyond)} (combination, test set) pairs"
        )
    return "\n".join(lines)


#: What a section says before its table, from the table (input name -> function).
NOTES: dict[str, Callable[[pd.DataFrame], str]] = {
    "cost_gain": gain_notes,
    "seed_noise": seed_noise_notes,
    "averaging": averaging_notes,
}


def _titled(title: str, table: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """A table of one metric (its ``metric`` column) names it in the title instead."""
    if "metric" in table.columns and table["metric"].nunique() == 1:
        title = f"{title}: {metric_label(str(table['metric'].iloc[0]))}"
        table = table.drop(columns="metric")
    return title, table


def write_summary(
    tables: Mapping[str, Path],
    out: Path,
    digits: int = 3,
    notes: Mapping[str, Callable[[pd.DataFrame], str]] | None = None,
) -> str:
    """One section per table (title -> CSV file), in the given order; returns the text.

    A table whose ``metric`` column holds one metric gets its name in the title;
    ``notes`` (title -> function of the table) put text before a section's table."""
    sections = ["# Study summary\n"]
    for title, path in tables.items():
        try:
            table = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise ValueError(f"{path}: cannot read the table for {title!r} ({error})") from None
        note = (notes or {}).get(title)
        prose = f"{note(table)}\n\n" if note is not None else ""
        title, table = _titled(title, table)
        sections.append(
            f"## {title}\n\n_Source: `{path}`_\n\n{prose}{markdown_table(table, digits)}"
        )
    text = "\n".join(sections)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode())
    return text


def write_study_summary(tables: Mapping[str, Path | str], out: Path | str) -> str:
    """The study's ``summary.md``: the tables of ``SECTIONS`` (input name -> CSV file) that
    the study has (``averaging`` only where a merged model has evaluated ingredients), with
    the ``NOTES`` of their sections."""
    notes = {SECTIONS[name]: note for name, note in NOTES.items()}
    chosen = {title: Path(tables[name]) for name, title in SECTIONS.items() if name in tables}
    return write_summary(chosen, Path(out), notes=notes)
