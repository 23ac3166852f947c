"""Rule `aggregate`: every evaluation file into the long metrics.csv and its conventions."""

from lesionsoup.evaluation.evaluate import aggregate, load_model_table

from logs import logged

with logged(snakemake.log[0]) as log:
    models = load_model_table(snakemake.input.models)
    table = aggregate(snakemake.input.evaluations, snakemake.output.metrics, models)
    log.info("%d rows -> %s", len(table), snakemake.output.metrics)
