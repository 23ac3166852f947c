"""Local GPU slots: each concurrent GPU job of one machine claims devices of its own.

Snakemake's ``gpu`` resource (``--resources gpu=4``) limits how many GPU jobs run at once
but does not say which device each one takes, so without this every job would use
device 0. A job claims a slot per device it needs: slot ``k`` is the file ``<k>.lock`` in
the slots folder, held with ``flock``, so the kernel frees it when the process ends, killed
(SIGKILL) included: a crash leaves no stale slot. The claim then sets
``CUDA_VISIBLE_DEVICES`` to the claimed devices, which is why it must come before CUDA is
initialised in the process (the driver reads the variable once).

No slot is claimed where a scheduler placed the job (``CUDA_VISIBLE_DEVICES`` already set,
as SLURM sets it, or a SLURM job), nor where there is no GPU. The folder is
``.snakemake/gpu-slots`` of the working directory (where Snakemake runs its jobs, so that
the slots are counted like the workflow's ``gpu`` resource) unless
``LESIONSOUP_GPU_SLOTS_DIR`` names another; ``LESIONSOUP_GPU_COUNT`` overrides the device
count (``nvidia-smi``'s, which does not initialise CUDA in this process).
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SLOTS_DIR_ENV = "LESIONSOUP_GPU_SLOTS_DIR"
COUNT_ENV = "LESIONSOUP_GPU_COUNT"
#: Relative to the working directory, where Snakemake runs its jobs.
DEFAULT_SLOTS_DIR = Path(".snakemake/gpu-slots")
#: Seconds between two looks for a free slot while waiting.
POLL_SECONDS = 0.5
#: Variables whose presence says that a scheduler chose the job's devices.
SCHEDULER_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")


@dataclass(frozen=True)
class Claim:
    """Devices held by this process: open, locked slot files (``descriptors``)."""

    devices: tuple[int, ...]
    descriptors: tuple[int, ...]

    def release(self) -> None:
        for descriptor in self.descriptors:
            os.close(descriptor)  # closing the last descriptor of a file drops its flock


def local_gpu_count(environ: Mapping[str, str] = os.environ) -> int:
    """How many GPUs this machine has: ``LESIONSOUP_GPU_COUNT`` if set, else ``nvidia-smi``'s
    count (0 without it or without a driver), asked in a subprocess so that CUDA is not
    initialised here."""
    if (override := environ.get(COUNT_ENV, "").strip()) != "":
        if not override.isdigit():
            raise ValueError(f"{COUNT_ENV}={override!r}: expected a count of GPUs >= 0")
        return int(override)
    query = ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]
    try:
        result = subprocess.run(query, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.debug("no GPU count from nvidia-smi (%s): no GPU slots", error)
        return 0
    if result.returncode != 0:
        log.debug("nvidia-smi failed (%s): no GPU slots", result.stderr.strip())
        return 0
    return sum(1 for line in result.stdout.splitlines() if line.strip())


def scheduler_placement(environ: Mapping[str, str] = os.environ) -> str | None:
    """The variable that says a scheduler placed this job, or None (a local job)."""
    return next((name for name in SCHEDULER_VARIABLES if name in environ), None)


def slots_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(SLOTS_DIR_ENV) or DEFAULT_SLOTS_DIR).absolute()


def _lock(path: Path) -> int | None:
    """An open descriptor of ``path`` holding its exclusive flock, or None if another holds it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by exec
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)  # who holds it, for a person
    return descriptor


def try_claim(count: int, total: int, directory: Path) -> Claim | None:
    """``count`` free slots of ``total`` in ``directory`` (the lowest free ones), or None,
    holding nothing, if fewer are free: a job never waits while holding part of a claim, so
    two jobs asking for several devices cannot block each other."""
    held: list[tuple[int, int]] = []
    for slot in range(total):
        if (descriptor := _lock(directory / f"{slot}.lock")) is not None:
            held.append((slot, descriptor))
            if len(held) == count:
                devices, descriptors = zip(*held, strict=True)
                return Claim(devices, descriptors)
    Claim((), tuple(descriptor for _, descriptor in held)).release()
    return None


def claim_slots(
    count: int, total: int, directory: Path, poll_seconds: float = POLL_SECONDS
) -> Claim:
    """``count`` slots of ``total``, waiting (a line in the log, then quiet) until they are free."""
    if not 1 <= count <= total:
        raise ValueError(f"cannot claim {count} GPU(s) of the {total} on this machine")
    directory.mkdir(parents=True, exist_ok=True)
    waiting = False
    while (claim := try_claim(count, total, directory)) is None:
        if not waiting:
            log.info("waiting for %d free GPU slot(s) of %d in %s", count, total, directory)
            waiting = True
        time.sleep(poll_seconds)
    return claim


def claim_local_gpus(
    count: int = 1, environ: MutableMapping[str, str] = os.environ
) -> Claim | None:
    """Claim ``count`` local GPUs for this process and make them its only visible devices.

    Call it before anything initialises CUDA, and keep the claim for the life of the process
    (child processes see the same devices). None, and ``environ`` untouched, when a scheduler
    placed the job or the machine has no GPU. Devices are numbered as ``nvidia-smi`` numbers
    them (``CUDA_DEVICE_ORDER=PCI_BUS_ID`` unless set)."""
    if (variable := scheduler_placement(environ)) is not None:
        log.debug("%s is set: the scheduler placed this job, no GPU slot claimed", variable)
        return None
    total = local_gpu_count(environ)
    if total == 0:
        return None
    directory = slots_dir(environ)
    claim = claim_slots(count, total, directory)
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, claim.devices))
    environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    log.info(
        "GPU slot: this job runs on physical GPU %s of %d (CUDA_VISIBLE_DEVICES=%s; slots in %s)",
        ",".join(map(str, claim.devices)),
        *(total, environ["CUDA_VISIBLE_DEVICES"], directory),
    )
    return claim
