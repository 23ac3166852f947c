"""Rule `report_methods`: the method comparison, cost-vs-gain and seed-noise figures."""

from lesionsoup.report.methods import MethodOutputs, report_methods

from logs import logged

with logged(snakemake.log[0]):
    report_methods(
        snakemake.input.metrics,
        snakemake.input.costs,
        snakemake.input.replicates,
        snakemake.input.comparisons,
        MethodOutputs(
            comparison=snakemake.output.comparison,
            cost_gain=snakemake.output.cost_gain,
            significance=snakemake.output.significance,
            seed_noise=snakemake.output.seed_noise,
            seed_noise_figure=snakemake.output.seed_noise_figure,
        ),
        metric=snakemake.params.metric,
        alpha=snakemake.params.alpha,
        tests=snakemake.params.tests,
    )
