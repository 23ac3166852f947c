"""Rule `costs`: training, merging and inference seconds of every evaluated model."""

from lesionsoup.evaluation.costs import write_costs

from logs import logged

with logged(snakemake.log[0]) as log:
    table = write_costs(snakemake.input.metrics, snakemake.input.notes, snakemake.output[0])
    log.info("costs of %d models -> %s", len(table), snakemake.output[0])
