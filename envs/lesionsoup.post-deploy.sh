#!/usr/bin/env bash
# Run by Snakemake in the new environment once it is built (`--sdm conda`): installs the
# project, editable, from the workflow's folder. The Snakefile exports LESIONSOUP_SOURCE (its
# own folder) before any environment is built; the dependencies are already in place.
set -euo pipefail
python -m pip install --no-deps --editable "${LESIONSOUP_SOURCE:?set by the Snakefile}"
