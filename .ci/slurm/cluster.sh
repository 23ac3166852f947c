#!/usr/bin/env bash
# A throw-away single-node SLURM cluster for the workflow's tests (root, no systemd).
#
#   cluster.sh up       install SLURM and munge if missing, write /etc/slurm/{slurm,gres}.conf,
#                       start munged, slurmctld and slurmd, wait until the node is idle
#   cluster.sh down     cancel the cluster's jobs, stop exactly the daemons `up` started (by
#                       PID) and remove everything `up` created; safe to run twice
#   cluster.sh status   show the daemons and the node
#
# `up` refuses to overwrite a SLURM configuration it did not write. Everything else lives in
# $LESIONSOUP_SLURM_STATE (default /var/tmp/lesionsoup-slurm).
set -euo pipefail

STATE_DIR=${LESIONSOUP_SLURM_STATE:-/var/tmp/lesionsoup-slurm}
STATE_MARKER=$STATE_DIR/.lesionsoup-test-cluster # only a folder with it is ever deleted
# Fixed location: job steps drop SLURM_CONF, so srun inside a job only finds /etc/slurm.
CONF_DIR=/etc/slurm
CTLD_PORT=${LESIONSOUP_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${LESIONSOUP_SLURMD_PORT:-6818}
TEMPLATE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MARKER="# lesionsoup test cluster: written by .ci/slurm/cluster.sh up, removed by cluster.sh down"
CONF_FILES=(slurm.conf gres.conf)
DAEMONS=(munged slurmctld slurmd) # start order; stopped in reverse
PACKAGES=(slurmctld slurmd slurm-client munge)
STARTUP_TIMEOUT_S=60

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

log() { echo "cluster.sh: $*"; }

# PID of a daemon this script started, if it still runs as that program; empty otherwise.
running_pid() {
	local name=$1 pid_file="$STATE_DIR/pids/$1" pid
	[[ -f $pid_file ]] || return 0
	pid=$(<"$pid_file")
	if [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]]; then
		echo "$pid"
	fi
}

# Succeeds once a command succeeds, fails when the daemon that should make it succeed exits
# or the startup timeout passes.
wait_for() {
	local daemon=$1 what=$2
	shift 2
	local deadline=$((SECONDS + STARTUP_TIMEOUT_S))
	until "$@" >/dev/null 2>&1; do
		if [[ -z $(running_pid "$daemon") ]]; then
			echo "cluster.sh: $daemon exited while waiting for $what" >&2
			return 1
		fi
		if ((SECONDS >= deadline)); then
			echo "cluster.sh: timed out after ${STARTUP_TIMEOUT_S}s waiting for $what" >&2
			return 1
		fi
		sleep 1
	done
}

is_ours() { [[ $(head -n 1 "$1") == "$MARKER" ]]; }

ensure_packages() {
	local missing=0 program
	for program in munged mungekey slurmctld slurmd sbatch; do
		command -v "$program" >/dev/null || missing=1
	done
	((missing)) || return 0
	command -v apt-get >/dev/null || die "SLURM or munge is missing; install: ${PACKAGES[*]}"
	log "installing ${PACKAGES[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
}

refuse_foreign_state() {
	local name path
	for name in "${CONF_FILES[@]}"; do
		path="$CONF_DIR/$name"
		if [[ -e $path ]] && ! is_ours "$path"; then
			die "refusing to overwrite $path: it was not written by this script (its first" \
				"line is not the lesionsoup marker). Is this machine part of a real cluster?"
		fi
	done
	if [[ -e $STATE_DIR && ! -e $STATE_MARKER ]]; then
		die "refusing to use $STATE_DIR as the cluster's state folder: it exists and was not" \
			"made by this script"
	fi
	for name in "${DAEMONS[@]}"; do
		[[ -z $(running_pid "$name") ]] ||
			die "the test cluster is already up (state in $STATE_DIR); run 'cluster.sh down' first"
	done
}

# Render a template to its destination through a temporary name (no half-written file).
render() {
	local template=$1 destination=$2
	local cpus memory_mb
	cpus=$(nproc)
	memory_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
	sed -e "s|@MARKER@|$MARKER|" \
		-e "s|@STATE_DIR@|$STATE_DIR|g" \
		-e "s|@CTLD_PORT@|$CTLD_PORT|g" \
		-e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
		-e "s|@CPUS@|$cpus|g" \
		-e "s|@REAL_MEMORY_MB@|$memory_mb|g" \
		"$template" >"$destination.tmp.$$"
	mv "$destination.tmp.$$" "$destination"
}

# Start a daemon in the foreground of a background process, so that $! is its own PID.
start_daemon() {
	local name=$1
	shift
	nohup "$@" >"$STATE_DIR/log/$name.out" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$STATE_DIR/pids/$name"
	# Until nohup has exec'ed the daemon, the process still carries nohup's name.
	while [[ -d /proc/$pid && $(cat /proc/"$pid"/comm 2>/dev/null) != "$name" ]]; do
		sleep 0.1
	done
}

node_is_idle() { [[ $(sinfo --noheader --nodes=localhost --format=%t) == idle ]]; }

show_logs() {
	local file
	for file in "$STATE_DIR"/log/*; do
		[[ -f $file ]] || continue
		echo "----- $file (last 20 lines)" >&2
		tail -n 20 "$file" >&2
	done
}

# Exit trap of `up`: show why it failed and leave nothing behind.
abort_up() {
	local status=$?
	show_logs
	down
	exit "$status"
}

up() {
	[[ $EUID -eq 0 ]] || die "must run as root (it writes $CONF_DIR and starts daemons)"
	ensure_packages
	refuse_foreign_state
	trap abort_up EXIT
	rm -rf "$STATE_DIR"
	mkdir -p "$STATE_DIR"/{pids,log,dev,slurmctld,slurmd,munge-key} "$CONF_DIR"
	touch "$STATE_MARKER"
	chmod 755 "$STATE_DIR"
	chmod 700 "$STATE_DIR/munge-key"
	for gpu in 0 1; do # copies of /dev/null standing in for two GPUs
		mknod "$STATE_DIR/dev/nvidia$gpu" c 1 3
	done
	mungekey --create --keyfile="$STATE_DIR/munge-key/munge.key"
	render "$TEMPLATE_DIR/slurm.conf.in" "$CONF_DIR/slurm.conf"
	render "$TEMPLATE_DIR/gres.conf.in" "$CONF_DIR/gres.conf"

	start_daemon munged munged --foreground \
		--socket="$STATE_DIR/munge.socket" --key-file="$STATE_DIR/munge-key/munge.key" \
		--pid-file="$STATE_DIR/munged.pid" --seed-file="$STATE_DIR/munged.seed" \
		--log-file="$STATE_DIR/log/munged.log"
	wait_for munged "its socket" test -S "$STATE_DIR/munge.socket"
	start_daemon slurmctld slurmctld -D -c
	wait_for slurmctld "it to answer" scontrol ping
	start_daemon slurmd slurmd -D -N localhost
	wait_for slurmd "the node to become idle" node_is_idle
	trap - EXIT
	log "up: partition 'debug', node localhost, $(nproc) CPUs, 2 GPUs (state in $STATE_DIR)"
}

ACTIVE_JOB_STATES=PENDING,RUNNING,CONFIGURING,COMPLETING

active_jobs() { squeue --noheader --format=%i --states="$ACTIVE_JOB_STATES"; }

no_active_jobs() { [[ -z $(active_jobs) ]]; }

cancel_jobs() {
	local job_ids
	[[ -n $(running_pid slurmctld) ]] || return 0
	job_ids=$(active_jobs 2>/dev/null) || return 0
	[[ -n $job_ids ]] || return 0
	log "cancelling jobs:" $job_ids
	# shellcheck disable=SC2086  # one argument per job id
	scancel $job_ids || true
	wait_for slurmctld "the cancelled jobs to end" no_active_jobs || true
}

stop_daemon() {
	local name=$1 pid
	pid=$(running_pid "$name")
	[[ -n $pid ]] || return 0
	kill -TERM "$pid"
	for _ in $(seq 20); do
		[[ -d /proc/$pid ]] || return 0
		sleep 0.5
	done
	kill -KILL "$pid" 2>/dev/null || true
}

down() {
	local index name
	cancel_jobs
	for ((index = ${#DAEMONS[@]} - 1; index >= 0; index--)); do
		stop_daemon "${DAEMONS[index]}"
	done
	for name in "${CONF_FILES[@]}"; do
		if [[ -f $CONF_DIR/$name ]] && is_ours "$CONF_DIR/$name"; then
			rm -f "$CONF_DIR/$name"
		fi
	done
	[[ ! -e $STATE_MARKER ]] || rm -rf "$STATE_DIR"
	log "down"
}

status() {
	local name pid
	for name in "${DAEMONS[@]}"; do
		pid=$(running_pid "$name")
		if [[ -n $pid ]]; then
			echo "$name: running (pid $pid)"
		else
			echo "$name: not running"
		fi
	done
	[[ -z $(running_pid slurmctld) ]] || sinfo
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: cluster.sh up|down|status" ;;
esac
