#!/usr/bin/env bash
# The project's tiny study (tests/configs/tiny.yaml) through the real SLURM test cluster:
# every job a SLURM job, GPU rules scheduled with a GPU, the same weights and metrics as a
# local run. Run by .ci/run; needs root (see .ci/slurm/cluster.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The rules call the `lesionsoup` command of the project's environment (VENV: another
# environment of the project, such as the README's demo install).
VENV=${VENV:-$HERE/../../.venv}
export PATH="$VENV/bin:$PATH" SNAKEMAKE="$VENV/bin/snakemake"

# Test-cluster sizes only: the single test node has 2 cores and ~20 GB.
RESOURCES="warmup:mem_mb=1500 train:mem_mb=1500 evaluate:mem_mb=1500 preprocess:mem_mb=1500"
export WORKFLOW=Snakefile
# Each combination's warm-up trains on two devices (gloo on the CPU): SLURM must grant them
# and the cores asked for (training.threads, 1, for each device).
export WORKFLOW_ARGS="--configfile tests/configs/tiny.yaml tests/slurm/two_devices.yaml --set-resources $RESOURCES"
export SEVERAL_DEVICES="warmup 2 2"
export LOCAL_GPUS=2
export GPU_RULES="warmup train hpo_trial merge ensemble evaluate connectivity size_curve"
export RECORDS_DIR=""
export COMPARE_DIR=results
# Weights, metrics and cache indexes; sidecars and logs record wall-clock times.
export COMPARE_NAMES="*.safetensors metrics.csv index.csv"
# Scratch: resume states, and Optuna trial runs named by trial number (the order trials
# were asked in, which differs between runs); the trials' published outputs are compared.
export COMPARE_EXCLUDE="*/.work/* ./hpo/*/runs/*"
exec bash "$HERE/run_test.sh"
