"""The processes of a run on several devices: started, watched and stopped together.

The command's process supervises; it trains nothing. ``supervise`` starts one
process per rank (spawned, so CUDA starts afresh in each), serves them a
rendezvous (a TCP store on this host) and the run's ``on_validation`` (rank
0 sends each validation here and waits for the answer, so a callback such as
an Optuna trial's needs no pickling), and waits until every rank has ended:

* all finished: rank 0's ``last`` metadata is returned;
* stopped by ``on_validation``: its exception is raised here, once every rank stopped;
* preempted (SIGTERM, forwarded to every rank): ``Preempted``, once rank 0 saved;
* a rank out of device memory, failed or dead: the others are killed (they may
  be waiting in a collective forever) and the rank's error is raised here.

A rank whose supervisor dies (SIGKILL) exits within a second: no orphan keeps
a GPU. The run's state is written atomically by rank 0, so a killed rank never
leaves a torn one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import torch.distributed as dist

from lesionsoup.core.preemption import Preempted
from lesionsoup.training.distributed import Ranks, joined
from lesionsoup.training.loop import StoppedByRankZero
from lesionsoup.training.micro_batch import MicroBatchTooLarge

log = logging.getLogger(__name__)

#: What a rank runs: its part of the run, with rank 0's ``on_validation`` (None on the others);
#: returns rank 0's ``last`` metadata. Picklable (a module-level function, or a partial of one);
#: its result plain data (a tensor would travel as a handle to memory that dies with the rank).
RankJob = Callable[[Ranks, Callable[[int, dict[str, Any]], None] | None], dict[str, Any] | None]
OnValidation = Callable[[int, dict[str, Any]], None]

_POLL_SECONDS = 1.0


class RankFailed(RuntimeError):
    """A rank of the run raised an error or died; the message carries its traceback."""


@dataclass
class _Outcomes:
    """How each rank ended, as its messages tell; and the callback's exception, if any."""

    world: int
    ended: dict[int, str] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    stop: BaseException | None = None
    preempted: str = ""


def supervise(
    job: RankJob, world: int, device: str, on_validation: OnValidation | None
) -> dict[str, Any]:
    """Run ``job`` on ``world`` ranks (see the module's description); rank 0's result."""
    context = multiprocessing.get_context("spawn")
    store = dist.TCPStore("127.0.0.1", 0, world + 1, is_master=True, wait_for_workers=False)
    messages = context.Queue()
    answers, rank_zero_end = context.Pipe()
    level = logging.getLogger().getEffectiveLevel()
    processes = [
        context.Process(
            target=_rank_main,
            args=(
                job,
                rank,
                world,
                store.port,
                device,
                messages,
                rank_zero_end,
                os.getpid(),
                level,
            ),
            name=f"rank{rank}",
        )
        for rank in range(world)
    ]
    for process in processes:
        process.start()
    log.info("training on %d devices: ranks %s", world, [process.pid for process in processes])
    outcomes = _Outcomes(world)
    try:
        with _forwarding_sigterm(processes) as terminated:
            _serve(processes, messages, answers, on_validation, outcomes, terminated)
    finally:
        _stop(processes)
    return _result(outcomes)


def _serve(
    processes: list[multiprocessing.Process],
    messages: Any,
    answers: Connection,
    on_validation: OnValidation | None,
    outcomes: _Outcomes,
    terminated: threading.Event,
) -> None:
    """Read the ranks' messages until each has ended; raise at the first failure."""
    while len(outcomes.ended) < outcomes.world:
        try:
            kind, rank, payload = messages.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            _check_alive(processes, outcomes, terminated)
            continue
        if kind == "validation":
            answers.send(_answer(on_validation, payload, outcomes))
            continue
        outcomes.ended[rank] = kind
        if kind == "done" and rank == 0:
            outcomes.result = payload
        elif kind == "preempted":
            outcomes.preempted = payload
        elif kind == "oom":
            raise MicroBatchTooLarge(payload, rank)
        elif kind == "failed":
            raise RankFailed(_failures(messages, {rank: payload}, outcomes.world))


def _failures(messages: Any, failed: dict[int, str], world: int) -> str:
    """Every rank's error: a rank's failure makes the others fail in their collectives, and
    which message arrives first says nothing of which came first; the others' come within
    a moment."""
    deadline = time.monotonic() + _POLL_SECONDS
    while len(failed) < world and (left := deadline - time.monotonic()) > 0:
        try:
            kind, rank, payload = messages.get(timeout=left)
        except queue.Empty:
            break
        if kind == "failed":
            failed[rank] = payload
    return "\n".join(
        f"rank {rank} of {world} failed:\n{text}" for rank, text in sorted(failed.items())
    )


def _answer(
    on_validation: OnValidation | None, payload: tuple[int, dict[str, Any]], outcomes: _Outcomes
) -> bool:
    """Call ``on_validation`` for rank 0; whether the run goes on (its exception is kept)."""
    if on_validation is None:
        return True
    try:
        on_validation(*payload)
    except Exception as error:  # noqa: BLE001 (raised by supervise once every rank stopped)
        outcomes.stop = error
        return False
    return True


def _check_alive(
    processes: list[multiprocessing.Process], outcomes: _Outcomes, terminated: threading.Event
) -> None:
    """Raise when a rank ended without saying how (killed, crashed in C)."""
    for rank, process in enumerate(processes):
        if rank not in outcomes.ended and not process.is_alive():
            message = f"rank {rank} of {outcomes.world} died (exit code {process.exitcode})"
            if terminated.is_set():
                raise Preempted(f"{message} after SIGTERM; rerun resumes from the last state")
            raise RankFailed(message)


def _result(outcomes: _Outcomes) -> dict[str, Any]:
    if outcomes.stop is not None:
        raise outcomes.stop
    if outcomes.preempted:
        raise Preempted(outcomes.preempted)
    if outcomes.result is None:
        raise RankFailed(f"rank 0 ended without a result: {outcomes.ended}")
    return outcomes.result


def _stop(processes: list[multiprocessing.Process]) -> None:
    """Kill the ranks still running (after a failure: they may wait in a collective forever)."""
    for process in processes:
        process.join(timeout=_POLL_SECONDS if process.is_alive() else 0)
        if process.is_alive():
            process.kill()
            process.join()


@contextmanager
def _forwarding_sigterm(processes: list[multiprocessing.Process]) -> Iterator[threading.Event]:
    """SIGTERM to the supervisor goes on to every rank (a local kill reaches only this process;
    SLURM signals them all, and a rank takes a second one like the first)."""
    terminated = threading.Event()

    def forward(signum: int, frame: Any) -> None:
        terminated.set()
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        yield terminated
    finally:
        signal.signal(signal.SIGTERM, previous)


class _ValidationRelay:
    """Rank 0's ``on_validation``: the supervisor calls the run's own and answers."""

    def __init__(self, messages: Any, answers: Connection) -> None:
        self.messages = messages
        self.answers = answers

    def __call__(self, step: int, scores: dict[str, Any]) -> None:
        self.messages.put(("validation", 0, (step, scores)))
        if not self.answers.recv():
            raise StoppedByRankZero(f"stopped by the run's on_validation at step {step}")


def _rank_main(
    job: RankJob,
    rank: int,
    world: int,
    port: int,
    device: str,
    messages: Any,
    answers: Connection,
    supervisor: int,
    level: int,
) -> None:
    """A rank's process: its part of the run, and one message saying how it ended."""
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s rank{rank} %(message)s")
    _exit_with(supervisor)
    try:
        with joined(rank, world, port, device) as ranks:
            relay = _ValidationRelay(messages, answers) if rank == 0 else None
            messages.put(("done", rank, job(ranks, relay)))
    except MicroBatchTooLarge as error:
        messages.put(("oom", rank, error.micro_batch))
    except Preempted as error:
        messages.put(("preempted", rank, str(error)))
    except StoppedByRankZero:
        messages.put(("stopped", rank, None))
    except BaseException:  # noqa: BLE001 (the supervisor raises it with this traceback)
        messages.put(("failed", rank, traceback.format_exc()))


def _exit_with(supervisor: int) -> None:
    """End this process within a second of its supervisor's death (SIGKILL included)."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="supervisor-watch").start()
