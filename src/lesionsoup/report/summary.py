"""``summary.md``: the study's main tables in one Markdown file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.metrics import metric_label
from lesionsoup.report.tables import markdown_table

#: The sections of the study's ``summary.md``, in order: the name of the table's input
#: (in ``rule summary``) -> its title.
SECTIONS = {
    "heatmap": "Cross-dataset scores (per lesion)",
    "fine_coarse": "Fine vs coarse training data",
    "cost_gain": "Cost vs gain per method",
    "styles": "Annotation-style clusters",
    "methods": "Methods per combination and test set",
    "significance": (
        "Each model against its combination's single-model baseline, and the configured "
        "pairs, mean over lesions (paired bootstrap over test images, Holm-adjusted)"
    ),
    "seed_noise": "Method gains against the spread of single models across seeds",
}


def _titled(title: str, table: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """A table of one metric (its ``metric`` column) names it in the title instead."""
    if "metric" in table.columns and table["metric"].nunique() == 1:
        title = f"{title}: {metric_label(str(table['metric'].iloc[0]))}"
        table = table.drop(columns="metric")
    return title, table


def write_summary(tables: Mapping[str, Path], out: Path, digits: int = 3) -> str:
    """One section per table (title -> CSV file), in the given order; returns the text.

    A table whose ``metric`` column holds one metric gets its name in the title."""
    sections = ["# Study summary\n"]
    for title, path in tables.items():
        try:
            table = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise ValueError(f"{path}: cannot read the table for {title!r} ({error})") from None
        title, table = _titled(title, table)
        sections.append(f"## {title}\n\n_Source: `{path}`_\n\n{markdown_table(table, digits)}")
    text = "\n".join(sections)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode())
    return text


def write_study_summary(tables: Mapping[str, Path | str], out: Path | str) -> str:
    """The study's ``summary.md``: the tables of ``SECTIONS`` (input name -> CSV file)."""
    return write_summary({title: Path(tables[name]) for name, title in SECTIONS.items()}, Path(out))
