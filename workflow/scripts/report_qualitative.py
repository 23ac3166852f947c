"""Rule `report_qualitative`: test images with their ground truth and the models' predictions."""

from lesionsoup.data.cache import Cache
from lesionsoup.report.qualitative import plot_qualitative

from logs import logged

with logged(snakemake.log[0]) as log:
    cache, out = Cache(snakemake.input.cache), snakemake.output[0]
    shown = plot_qualitative(cache, snakemake.params.models, out, snakemake.params.images)
    log.info("qualitative figure of %s -> %s", shown, out)
