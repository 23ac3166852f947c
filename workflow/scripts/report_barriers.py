"""Rule `report_barriers`: the linear-mode-connectivity barriers of every configured pair."""

import json

from lesionsoup.report.averaging import report_barriers

from logs import logged

with logged(snakemake.log[0]):
    parts = json.loads(snakemake.params.parts)
    report_barriers(
        dict(zip(parts, snakemake.input.curves, strict=True)),
        parts,
        snakemake.output.table,
        snakemake.output.figure,
    )
