#!/usr/bin/env bash
# End-to-end test of the SLURM executor: bring up a single-node cluster, run a workflow once
# locally and once through SLURM, check that every job ran as a SLURM job, that GPU rules got a
# GPU and CPU rules none, and that both runs produced the same outputs. The cluster always
# comes down again, whether the test passes or fails. Needs root (see .ci/slurm/cluster.sh).
#
#   bash tests/slurm/run_test.sh
#
# Point it at another workflow by overriding the variables below from the environment.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SNAKEMAKE=${SNAKEMAKE:-$REPO/.venv/bin/snakemake}
WORKFLOW=${WORKFLOW:-$REPO/tests/slurm/Snakefile}
# Extra arguments for both runs, split on spaces, e.g. "--configfile config/tiny.yaml".
# Relative paths start from the repository root.
read -r -a WORKFLOW_ARGS <<<"${WORKFLOW_ARGS:-}"
# Output folder compared between the local and the SLURM run ("" skips the comparison).
COMPARE_DIR=${COMPARE_DIR-results}
# File name patterns compared inside COMPARE_DIR, split on spaces ("" compares every file);
# e.g. leave out files that record wall-clock times or absolute paths.
read -r -a COMPARE_NAMES <<<"${COMPARE_NAMES:-}"
# Path patterns left out of the comparison, split on spaces (e.g. scratch folders).
read -r -a COMPARE_EXCLUDE <<<"${COMPARE_EXCLUDE:-}"
# Folder of per-job records (SLURM_JOB_ID=, SLURM_JOB_GPUS=, CUDA_VISIBLE_DEVICES=), if any.
RECORDS_DIR=${RECORDS_DIR-records}
# Rules whose jobs must get a GPU; jobs of all other rules must get none.
read -r -a GPU_RULES <<<"${GPU_RULES-gpu_sum}"
# A rule whose jobs ask for several GPUs, "rule GPUs cores" (e.g. "warmup 2 2"): each job of
# it must be granted those GPUs and cores, and there must be one ("" checks none).
read -r -a SEVERAL_DEVICES <<<"${SEVERAL_DEVICES:-}"
# Both runs start in the repository root and use its profiles, as a user's would; the local
# run's pool of GPUs holds the most a job asks for.
LOCAL_ARGS=(--profile profiles/local --cores "${LOCAL_CORES:-2}" --resources "gpu=${LOCAL_GPUS:-1}")
SLURM_ARGS=(
	--profile slurm # the users' profile, through the bare-name alias ./slurm
	# test-cluster settings only:
	--slurm-status-command squeue # no accounting database here, so no sacct
	--slurm-init-seconds-before-status-checks 2
	--seconds-between-status-checks 3
	--slurm-keep-successful-logs
)
export LESIONSOUP_SLURM_PARTITION=debug LESIONSOUP_SLURM_ACCOUNT=
KEEP_WORK_DIR=${KEEP_WORK_DIR:-0} # 1: keep the runs' folders for inspection
# HTML report of the local run, built after the checks by `snakemake --report` ("" builds none).
REPORT=${REPORT:-}
CLUSTER=$REPO/.ci/slurm/cluster.sh

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/lesionsoup-slurm-test.XXXXXX")
FAILURES=0
SNAKEMAKE_PID=

cleanup() {
	local status=$?
	# An interrupted run: stop Snakemake first (it cancels its SLURM jobs), then the cluster.
	if [[ -n $SNAKEMAKE_PID ]] && kill -TERM "$SNAKEMAKE_PID" 2>/dev/null; then
		for _ in {1..30}; do # give it 30 s to cancel its jobs, then stop it for good
			kill -0 "$SNAKEMAKE_PID" 2>/dev/null || break
			sleep 1
		done
		kill -KILL "$SNAKEMAKE_PID" 2>/dev/null || true
		wait "$SNAKEMAKE_PID" || true
	fi
	bash "$CLUSTER" down || status=1
	if [[ $KEEP_WORK_DIR == 1 ]]; then
		echo "run_test: runs kept in $WORK_DIR"
	else
		rm -rf "$WORK_DIR"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "FAIL: $*" >&2
	FAILURES=$((FAILURES + 1))
}

pass() { echo "ok: $*"; }

# Seconds since the epoch with centiseconds, for the timings.
now() { date +%s.%N | cut -c1-13; }

# Run Snakemake in the background so that an interrupt reaches the trap at once.
run_snakemake() {
	local log=$1
	shift
	"$SNAKEMAKE" --snakefile "$WORKFLOW" "${WORKFLOW_ARGS[@]}" "$@" >"$log" 2>&1 &
	SNAKEMAKE_PID=$!
	wait "$SNAKEMAKE_PID" || {
		SNAKEMAKE_PID=
		tail -n 60 "$log" >&2
		return 1
	}
	SNAKEMAKE_PID=
}

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }

# Value of KEY=value in a job record.
record_value() { sed -n "s/^$2=//p" "$1"; }

# The field KEY=value of `scontrol show job` output.
job_field() { grep -oP "\b$2=\K[^ ]*" <<<"$1" | head -n 1 || true; }

is_gpu_rule() {
	local rule
	for rule in "${GPU_RULES[@]}"; do
		[[ $1 == "$rule" ]] && return 0
	done
	return 1
}

SEVERAL_DEVICE_JOBS=0
check_several_devices() {
	local job_id=$1 rule=$2 info=$3
	((${#SEVERAL_DEVICES[@]})) && [[ $rule == "${SEVERAL_DEVICES[0]}" ]] || return 0
	SEVERAL_DEVICE_JOBS=$((SEVERAL_DEVICE_JOBS + 1))
	[[ $(job_field "$info" TresPerJob) == *gpu:"${SEVERAL_DEVICES[1]}" ]] ||
		fail "job $job_id ($rule) got $(job_field "$info" TresPerJob), not ${SEVERAL_DEVICES[1]} GPUs"
	[[ $(job_field "$info" NumCPUs) == "${SEVERAL_DEVICES[2]}" ]] ||
		fail "job $job_id ($rule) got $(job_field "$info" NumCPUs) cores, not ${SEVERAL_DEVICES[2]}"
}

check_jobs_ran_in_slurm() {
	local log=$1 failures_before=$FAILURES planned job_id info rule tres
	planned=$(grep -cE '^(rule|checkpoint) [A-Za-z_][A-Za-z0-9_]*:$' "$log" || true)
	mapfile -t JOB_IDS < <(grep -oP 'has been submitted with SLURM jobid \K[0-9]+' "$log")
	if ((planned > 0 && ${#JOB_IDS[@]} == planned)); then
		pass "all $planned non-local jobs were submitted to SLURM (ids ${JOB_IDS[*]})"
	else
		fail "$planned non-local jobs planned, ${#JOB_IDS[@]} submitted to SLURM"
	fi
	for job_id in "${JOB_IDS[@]}"; do
		info=$(scontrol show job "$job_id" 2>&1) || {
			fail "scontrol does not know job $job_id: $info"
			continue
		}
		# The executor comments each job with rule_<rule>[_wildcards_<values>].
		rule=$(job_field "$info" Comment | sed -E 's/^rule_//; s/_wildcards_.*$//')
		tres=$(job_field "$info" TresPerJob)
		[[ $(job_field "$info" JobState) == COMPLETED ]] ||
			fail "job $job_id ($rule) is $(job_field "$info" JobState), not COMPLETED"
		# The users' profile reached sbatch: partition from the environment, requeue on.
		[[ $(job_field "$info" Partition) == "$LESIONSOUP_SLURM_PARTITION" ]] ||
			fail "job $job_id ran in partition $(job_field "$info" Partition)"
		[[ $(job_field "$info" Requeue) == 1 ]] || fail "job $job_id is not requeueable"
		if is_gpu_rule "$rule"; then
			[[ $tres == *gpu* ]] || fail "job $job_id ($rule) was scheduled without a GPU"
		else
			[[ $tres != *gpu* ]] || fail "job $job_id ($rule) was given a GPU ($tres)"
		fi
		check_several_devices "$job_id" "$rule" "$info"
	done
	if ((${#SEVERAL_DEVICES[@]})); then
		((SEVERAL_DEVICE_JOBS > 0)) || fail "no job of ${SEVERAL_DEVICES[0]} ran"
		((FAILURES > failures_before)) ||
			pass "$SEVERAL_DEVICE_JOBS ${SEVERAL_DEVICES[0]} jobs were granted" \
				"${SEVERAL_DEVICES[1]} GPUs and ${SEVERAL_DEVICES[2]} cores"
	fi
	((FAILURES > failures_before)) ||
		pass "all ${#JOB_IDS[@]} jobs COMPLETED in partition $LESIONSOUP_SLURM_PARTITION," \
			"requeueable; exactly the jobs of ${GPU_RULES[*]:-no rule} got a GPU"
}

check_records() {
	local slurm_records=$1 local_records=$2 failures_before=$FAILURES record job_id rule
	[[ -n $RECORDS_DIR && -d $slurm_records ]] || return 0
	for record in "$slurm_records"/*.env; do
		job_id=$(record_value "$record" SLURM_JOB_ID)
		[[ -n $job_id && " ${JOB_IDS[*]} " == *" $job_id "* ]] ||
			fail "$(basename "$record") was written outside the submitted SLURM jobs" \
				"(SLURM_JOB_ID='$job_id')"
	done
	for rule in "${GPU_RULES[@]}"; do
		for record in "$slurm_records/$rule"*.env; do
			[[ -f $record ]] || fail "no job record of GPU rule $rule"
			[[ -n $(record_value "$record" SLURM_JOB_GPUS)$(record_value "$record" \
				CUDA_VISIBLE_DEVICES) ]] ||
				fail "$rule saw no GPU (no SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES)"
		done
	done
	# The local run's records prove that the checks above can tell the difference.
	if grep -q '^SLURM_JOB_ID=.' "$local_records"/*.env; then
		fail "the local run's records carry SLURM job ids: was it run inside a SLURM job?"
	fi
	((FAILURES > failures_before)) ||
		pass "$(find "$slurm_records" -name '*.env' | wc -l) job records carry their SLURM job id;" \
			"GPU jobs saw:" $(for rule in "${GPU_RULES[@]}"; do
				grep -h '^SLURM_JOB_GPUS=.\|^CUDA_VISIBLE_DEVICES=.' "$slurm_records/$rule"*.env
			done)
}

# Files of COMPARE_DIR matching COMPARE_NAMES, relative to it, sorted.
compared_files() {
	local pattern names=() excluded=()
	for pattern in "${COMPARE_NAMES[@]}"; do
		names+=(-o -name "$pattern")
	done
	for pattern in "${COMPARE_EXCLUDE[@]}"; do
		excluded+=(-not -path "$pattern")
	done
	(cd "$1" && if ((${#names[@]})); then
		find . -type f \( "${names[@]:1}" \) "${excluded[@]}"
	else
		find . -type f "${excluded[@]}"
	fi | sort)
}

check_same_outputs() {
	[[ -n $COMPARE_DIR ]] || return 0
	local local_dir=$WORK_DIR/local/$COMPARE_DIR slurm_dir=$WORK_DIR/slurm/$COMPARE_DIR file same=1
	if ! diff <(compared_files "$local_dir") <(compared_files "$slurm_dir"); then
		same=0
	fi
	while read -r file; do
		cmp -s "$local_dir/$file" "$slurm_dir/$file" || {
			echo "differs: $file" >&2
			same=0
		}
	done < <(compared_files "$local_dir")
	if ((same)); then
		pass "$COMPARE_DIR/ is identical in the local and the SLURM run" \
			"($(compared_files "$slurm_dir" | wc -l) files${COMPARE_NAMES[*]:+: ${COMPARE_NAMES[*]}})"
	else
		fail "$COMPARE_DIR/ differs between the local and the SLURM run"
	fi
}

check_report() {
	[[ -n $REPORT ]] || return 0
	if "$SNAKEMAKE" --snakefile "$WORKFLOW" "${WORKFLOW_ARGS[@]}" --directory "$WORK_DIR/local" \
		--report "$REPORT" >"$WORK_DIR/report.log" 2>&1 && grep -q '<html' "$REPORT"; then
		pass "the local run's report: $REPORT"
	else
		tail -n 30 "$WORK_DIR/report.log" >&2
		fail "no HTML report of the local run"
	fi
}

main() {
	local t0 t1 t2 t3
	t0=$(now)
	bash "$CLUSTER" up
	t1=$(now)
	run_snakemake "$WORK_DIR/local.log" --directory "$WORK_DIR/local" "${LOCAL_ARGS[@]}" ||
		{
			fail "the local run failed"
			return
		}
	t2=$(now)
	run_snakemake "$WORK_DIR/slurm.log" --directory "$WORK_DIR/slurm" "${SLURM_ARGS[@]}" ||
		{
			fail "the SLURM run failed"
			return
		}
	t3=$(now)
	check_jobs_ran_in_slurm "$WORK_DIR/slurm.log"
	check_records "$WORK_DIR/slurm/$RECORDS_DIR" "$WORK_DIR/local/$RECORDS_DIR"
	check_same_outputs
	echo "timings: cluster up $(elapsed "$t0" "$t1"), local run $(elapsed "$t1" "$t2")," \
		"SLURM run $(elapsed "$t2" "$t3")"
	check_report
}

cd "$REPO"
main
if ((FAILURES > 0)); then
	echo "run_test: $FAILURES check(s) failed" >&2
	exit 1
fi
echo "run_test: all checks passed"
