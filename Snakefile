"""lesionsoup: cross-dataset retinal lesion segmentation studies.

`snakemake --cores all` runs the demo of config.yaml; `--configfile
config/paper.yaml` runs the paper's study on the real datasets. A study given
with --configfile is read alone (config.yaml is not merged under it), its
omitted keys taking the schemas' documented defaults.
"""

import os
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version

from lesionsoup.core import permissions
from lesionsoup.core import paths
from lesionsoup.plan.datasets import resolve_subsets
from lesionsoup.plan.validation import validate_config

min_version("9.0")


if not workflow.overwrite_configfiles:  # no --configfile: the demo

    configfile: "config.yaml"


# Where envs/lesionsoup.post-deploy.sh installs the project from, into each rule's conda
# environment (`--sdm conda`): this workflow's folder.
os.environ.setdefault("LESIONSOUP_SOURCE", workflow.basedir)

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
VERBOSE = workflow.output_settings.verbose
validate_config(config, SCHEMAS / "config.schema.yaml", VERBOSE)
# A section behind a whole-file $ref is checked by a plain validator that fills no
# defaults (the file's $schema switches validators): validating it alone fills them.
validate_config(config["merging"], SCHEMAS / "merging.schema.yaml", VERBOSE)
validate_config(config["report"], SCHEMAS / "report.schema.yaml", VERBOSE)
# Subset datasets (`of`): each entry becomes its source's, its own keys merged in.
resolve_subsets(config, SCHEMAS / "config.schema.yaml")

# results.mode, as this process's umask: every file and folder Snakemake and its jobs create
# follow it (local jobs inherit it; a cluster job's snakemake reads this file again). The
# folders of an earlier, wider mode are narrowed; the files already in them keep their bits.
permissions.restrict(config["results"]["mode"])
for change in permissions.narrow_folders(paths.written_folders(config)):
    logger.warning(f"results.mode {config['results']['mode']}: {change}")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/hpo.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        targets.study_targets(config),
