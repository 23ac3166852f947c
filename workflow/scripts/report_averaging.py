"""Rule `report_averaging`: each merged model against its ingredients and their ensemble."""

import json

from lesionsoup.report.averaging import report_averaging

from logs import logged

with logged(snakemake.log[0]):
    report_averaging(
        snakemake.input.replicates,
        json.loads(snakemake.params.conditions),
        snakemake.params.alpha,
        snakemake.output.gains,
        snakemake.output.verdicts,
        snakemake.output.figure,
    )
