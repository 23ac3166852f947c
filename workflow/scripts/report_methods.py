"""Rule `report_methods`: the method comparison and the cost-vs-gain figure."""

from lesionsoup.report.methods import report_methods

from logs import logged

with logged(snakemake.log[0]):
    report_methods(
        snakemake.input.metrics,
        snakemake.input.costs,
        comparison=snakemake.output.comparison,
        cost_gain=snakemake.output.cost_gain,
        metric=snakemake.params.metric,
        intervals_csv=snakemake.input.intervals,
        comparisons_csv=snakemake.input.comparisons,
        significance=snakemake.output.significance,
        alpha=snakemake.params.alpha,
    )
