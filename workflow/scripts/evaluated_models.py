"""Rule `evaluated_models`: the model table (path -> [train_combo, method]) of metrics.csv."""

from lesionsoup.evaluation.evaluate import save_model_table

from logs import logged

with logged(snakemake.log[0]) as log:
    save_model_table(snakemake.params.models, snakemake.output[0])
    log.info("%d models -> %s", len(snakemake.params.models), snakemake.output[0])
