"""Rule `report_cross_dataset`: the cross-dataset heatmaps and the fine-vs-coarse figure."""

from lesionsoup.report.cross_dataset import report_cross_dataset

from logs import logged

with logged(snakemake.log[0]):
    report_cross_dataset(
        snakemake.input.metrics,
        snakemake.input.replicates,
        heatmap=snakemake.output.heatmap,
        fine_coarse=snakemake.output.fine_coarse,
        metric=snakemake.params.metric,
        method=snakemake.params.method,
        coarse=snakemake.params.coarse,
    )
