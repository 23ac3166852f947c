"""Rule `report_reliability`: reliability diagrams of the best model of each method."""

from lesionsoup.report.calibration import report_reliability

from logs import logged

with logged(snakemake.log[0]):
    report_reliability(
        snakemake.input.metrics,
        snakemake.input.notes,
        snakemake.input.intervals,
        snakemake.output.figure,
        metric=snakemake.params.metric,
    )
