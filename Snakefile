"""lesionsoup: cross-dataset retinal lesion segmentation studies.

`snakemake --cores all` runs the demo of config.yaml; `--configfile
config/paper.yaml` runs the paper's study on the real datasets.
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/hpo.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        targets.study_targets(config),
