"""The loss-landscape stage of two checkpoints (``lesionsoup connectivity``): the linear mode
connectivity curves between A and B, one per BatchNorm policy (``connectivity``), and the
sharpness of A and B (``sharpness``), written as the analysis's tables; its figure is
``report.connectivity``'s."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from lesionsoup.analysis.connectivity import barrier, connectivity_curve
from lesionsoup.analysis.sharpness import SharpnessOptions, checkpoints_sharpness, sharpness
from lesionsoup.core.atomic import write_csv
from lesionsoup.core.device import pick_device
from lesionsoup.core.merge_rules import DEFAULT_PART, BatchNormPolicy, BatchNormSample, Part
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.data.staging import staged_caches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectivityOptions:
    """The path's ``points`` (both ends included), one curve per BatchNorm policy, the
    ``part`` that moves (the rest stays A's), the sample that recomputes BatchNorm, and the
    perturbations of the sharpness table."""

    points: int = REPORT_DEFAULTS["connectivity"]["points"]
    bn_policies: Sequence[BatchNormPolicy] = tuple(REPORT_DEFAULTS["connectivity"]["bn_policies"])
    part: Part = DEFAULT_PART
    bn_sample: BatchNormSample = field(default_factory=BatchNormSample)
    sharpness: SharpnessOptions = field(default_factory=SharpnessOptions)


@dataclass(frozen=True)
class Landscape:
    """What the stage found between checkpoints ``a`` and ``b``: a curve per BatchNorm policy,
    and the sharpness table of A and B where it was asked for."""

    a: Path
    b: Path
    part: Part
    curves: dict[str, pd.DataFrame]
    sharpness: pd.DataFrame | None


def run_connectivity(
    pair: tuple[Path, Path],
    caches: Sequence[Path],
    options: ConnectivityOptions,
    output: Path,
    sharpness_output: Path | None = None,
    *,
    stage_caches: str | None = None,
    device: str = "auto",
    threads: int = 1,
) -> Landscape:
    """The stage on the validation split of the caches (opened on checked copies in
    ``stage_caches``): the curves' table in ``output``, with ``sharpness_output`` the
    sharpness table of A and B there; barriers and sharpness logged."""
    torch.set_num_threads(threads)
    on = pick_device(device)
    a, b = pair
    with staged_caches(caches, stage_caches) as opened:
        curves = {
            policy: connectivity_curve(
                a, b, opened, options.points, policy, options.bn_sample, device=on,
                part=options.part,
            )
            for policy in options.bn_policies
        }  # fmt: skip
        flatness = (
            checkpoints_sharpness({"A": a, "B": b}, opened, options.sharpness, on)
            if sharpness_output
            else None
        )
    write_csv(pd.concat(curves, names=["bn_policy"]).reset_index(level=0), output)
    if flatness is not None:
        write_csv(flatness, sharpness_output)
    _log_landscape(curves, flatness)
    return Landscape(a, b, options.part, curves, flatness)


def _log_landscape(curves: dict[str, pd.DataFrame], flatness: pd.DataFrame | None) -> None:
    """Each curve's score and loss barriers; A's and B's sharpness."""
    for policy, curve in curves.items():
        log.info(
            "%s: score barrier %.4f, loss barrier %.4f",
            policy,
            barrier(curve),
            barrier(curve, "loss", higher_is_better=False),
        )
    if flatness is not None:
        for name, own in flatness.groupby("model"):
            log.info("sharpness of %s: %s", name, sharpness(own).round(4).to_dict())
