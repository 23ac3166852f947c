"""Rule `report_pr_curves`: precision-recall curves of the best models per test set."""

from lesionsoup.report.pr_curves import report_pr_curves

from logs import logged

with logged(snakemake.log[0]):
    report_pr_curves(
        snakemake.input.metrics,
        snakemake.input.notes,
        snakemake.input.replicates,
        snakemake.output.figure,
        top=snakemake.params.top,
        metric=snakemake.params.metric,
    )
