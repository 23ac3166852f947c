"""Pretrained encoder weights: where they come from, found offline, fetched once.

``model.encoder_weights`` names weights that segmentation_models_pytorch (its own
encoders) or timm (``tu-`` encoders) download from the Hugging Face hub. Compute nodes
often have no network, so the workflow fetches them once where Snakemake runs
(``lesionsoup fetch-weights``, the ``fetch_weights`` rule) into a project cache, a folder
laid out like ``HF_HOME`` (its hub cache in ``<folder>/hub``), and the training jobs read
them from there offline (``--pretrained-cache``): a job never touches the network.

Without a project cache (the library used by hand), the weights are looked up in the
default Hugging Face cache first, offline; only when they are missing is the hub asked,
once, with a short timeout and no retries, before they are downloaded. huggingface_hub
alone retries a failed lookup with a backoff of 1+2+4+8+8 s (``http_backoff``, called by
``hf_hub_download`` when a file is neither reachable nor cached): ~25 s before the error on a
machine without network, which the probe turns into an immediate one.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Seconds the one request that checks the hub is reachable may take (no retries).
PROBE_TIMEOUT = 5.0
#: The file of timm's hub repositories that timm reads first (its safetensors alternative
#: of ``pytorch_model.bin``).
TIMM_WEIGHTS = "model.safetensors"
#: The workflow's project cache (``core.paths.PRETRAINED``), named in the instructions of
#: ``EncoderWeightsUnavailable`` when no other folder is known.
WORKFLOW_CACHE = Path("resources/pretrained")


class EncoderWeightsUnavailable(OSError):
    """Pretrained encoder weights were asked for and cannot be had on this machine."""


@dataclass(frozen=True)
class PretrainedSource:
    """The hub file that holds ``weights`` of ``encoder``, and the files fetched beside it
    (segmentation_models_pytorch reads a ``config.json`` too). ``revision`` None: the
    repository's main branch (timm's)."""

    encoder: str
    weights: str
    repo_id: str
    revision: str | None
    filename: str
    companions: tuple[str, ...] = ()


def timm_name(encoder: str) -> str | None:
    """The timm model of a ``tu-`` encoder (or of a deprecated ``timm-`` one that
    segmentation_models_pytorch builds through timm); None for its own encoders."""
    if encoder.startswith("tu-"):
        return encoder[3:]
    from segmentation_models_pytorch.encoders import is_equivalent_to_timm_universal

    if encoder.startswith("timm-") and is_equivalent_to_timm_universal(encoder):
        name = encoder.removeprefix("timm-")
        return f"tf_{name}" if "mobilenetv3" in name else name
    return None


def source_of(encoder: str, weights: str) -> PretrainedSource:
    """Where segmentation_models_pytorch (or timm, for ``tu-`` encoders, whatever
    ``weights`` source.filename, source.repo_id) downloads the encoder's pretrained weights from."""
    name = timm_name(encoder)
    if name is not None:
        return _timm_source(encoder, weights, name)
    from segmentation_models_pytorch.encoders import encoders

    if encoder not in encoders:
        raise ValueError(f"unknown encoder {encoder!r}: not a segmentation_models_pytorch one")
    available = encoders[encoder]["pretrained_settings"]
    if weights not in available:
        raise ValueError(
            f"no {weights!r} weights for encoder {encoder!r}; available: {sorted(available)}"
        )
    settings = available[weights]
    return PretrainedSource(
        encoder,
        weights,
        settings["repo_id"],
        settings["revision"],
        "model.safetensors",
        companions=("config.json",),
    )


def _timm_source(encoder: str, weights: str, name: str) -> PretrainedSource:
    import timm

    config = timm.models.get_pretrained_cfg(name)
    if config is None or not config.hf_hub_id:
        raise ValueError(f"timm has no Hugging Face hub weights for {name!r} (encoder {encoder!r})")
    repo_id, _, revision = config.hf_hub_id.partition("@")
    return PretrainedSource(
        encoder, weights, repo_id, revision or None, config.hf_hub_filename or TIMM_WEIGHTS
    )


def hub_cache(folder: Path) -> Path:
    """The hub cache of an ``HF_HOME``-style folder (what ``HF_HUB_CACHE`` would name)."""
    return Path(folder) / "hub"


def cached_file(source: PretrainedSource, hub: Path | None = None) -> Path | None:
    """The weights file in the hub cache ``hub`` (default: the Hugging Face cache of this
    process), looked up without any network; None when it is not there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        source.repo_id, source.filename, cache_dir=hub, revision=source.revision
    )
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def weights_file(source: PretrainedSource, folder: Path | None = None) -> Path:
    """The weights file of ``source``: read from the project cache ``folder`` offline (a
    job's; the network is never tried), or, without one, from the default Hugging Face
    cache, downloaded there once when missing and the hub answers (``download``)."""
    if folder is not None:
        found = cached_file(source, hub_cache(folder))
        if found is None:
            reason = f"they are not in the pretrained cache {folder} (read without network)"
            raise unavailable(source, reason, folder)
        return found
    return cached_file(source) or download(source, None)


def download(source: PretrainedSource, hub: Path | None) -> Path:
    """Download ``source`` (and its companion files) into the hub cache ``hub`` (None: the
    default one). One request with a short timeout and no retries checks that the hub
    answers first, so that a machine without network fails at once, not after the ~25 s of
    retries huggingface_hub spends before its own error."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    url = hf_hub_url(source.repo_id, source.filename, revision=source.revision)
    try:
        get_hf_file_metadata(url, timeout=PROBE_TIMEOUT)
    except Exception as error:  # offline mode, DNS, refused, timeout, HTTP: all mean "not here"
        reason = f"the hub could not be reached ({type(error).__name__}: {error})"
        raise unavailable(source, reason) from error
    try:
        for filename in (*source.companions, source.filename):
            path = hf_hub_download(
                source.repo_id, filename, revision=source.revision, cache_dir=hub
            )
    except Exception as error:
        reason = f"the download failed ({type(error).__name__}: {error})"
        raise unavailable(source, reason) from error
    return Path(path)


def unavailable(
    source: PretrainedSource, reason: str, folder: Path | None = None
) -> EncoderWeightsUnavailable:
    """The error saying why the weights cannot be had here, and how to have them (fetched
    into ``folder``, by default the workflow's project cache)."""
    folder = WORKFLOW_CACHE if folder is None else folder
    record = folder / record_name(source.encoder, source.weights)
    return EncoderWeightsUnavailable(
        f"encoder weights {source.weights!r} for {source.encoder!r} (Hugging Face hub "
        f"{source.repo_id}, {source.filename}) cannot be loaded: {reason}. Where the network "
        f"is reachable, fetch them once into a folder the jobs can read:\n"
        f"  lesionsoup fetch-weights --encoder {source.encoder} --weights {source.weights} "
        f"--cache {folder} -o {record}\n"
        f"(the workflow's fetch_weights rule does this where Snakemake runs) and pass "
        f"--pretrained-cache {folder}; or copy a Hugging Face cache holding them "
        f"(~/.cache/huggingface, or $HF_HOME) to this machine and set HF_HOME to it and "
        f"HF_HUB_OFFLINE=1. Or set model.encoder_weights: null in the config to start from "
        f"random weights."
    )


def record_name(encoder: str, weights: str) -> str:
    """The file name of a fetch's record (``core.paths.PRETRAINED_RECORD`` names it alike)."""
    return f"{encoder}.{weights}.json"


def fetch(encoder: str, weights: str, folder: Path) -> dict[str, Any]:
    """Have ``weights`` of ``encoder`` in the project cache ``folder`` (``HF_HOME``-style):
    found there offline, else downloaded (the hub checked first, see ``download``); returns
    the record of what is there: source, the commit read and the file's SHA-256."""
    source = source_of(encoder, weights)
    hub = hub_cache(folder)
    path = cached_file(source, hub)
    if path is None:
        log.info("%s: downloading %s from %s", folder, source.filename, source.repo_id)
        path = download(source, hub)
    else:
        log.info(
            "%s: %s of %s already there; the network was not used",
            folder,
            source.filename,
            source.repo_id,
        )
    return {
        **asdict(source),
        "companions": list(source.companions),
        "commit": path.parent.name,  # <hub>/models--<repo>/snapshots/<commit>/<filename>
        "sha256": _file_sha256(path),
        "bytes": path.stat().st_size,
        "cache": str(folder),
    }


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()
