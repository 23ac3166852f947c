"""Rule `uncertainty`: bootstrap intervals and paired comparisons from the evaluation files."""

from lesionsoup.evaluation.evaluate import load_model_table
from lesionsoup.evaluation.uncertainty import (
    BootstrapSettings,
    comparison_table,
    interval_table,
    load_scored,
)
from lesionsoup.report.tables import write_csv

from logs import logged

with logged(snakemake.log[0]) as log:
    settings = BootstrapSettings(**snakemake.params.bootstrap)
    models = load_model_table(snakemake.input.models)
    scored = load_scored(snakemake.input.evaluations, models)
    write_csv(interval_table(scored, settings), snakemake.output.intervals)
    comparisons = comparison_table(scored, snakemake.params.metric, settings)
    write_csv(comparisons, snakemake.output.comparisons)
    log.info(
        "%d comparisons, %d significant after Holm",
        len(comparisons),
        comparisons["significant"].sum(),
    )
