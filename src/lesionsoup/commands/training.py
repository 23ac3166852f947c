"""Subcommands of the training stages: fetch-weights, pretrained-start, warmup, train."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lesionsoup.commands.arguments import (
    Subcommands,
    add_cache_arguments,
    add_pretrained_argument,
    add_training_run_arguments,
    json_object,
    open_caches,
    run_options,
)
from lesionsoup.plan.options import TRAIN_OPTIMIZER_OPTIONS, add_options

log = logging.getLogger("lesionsoup")


def _train(args: argparse.Namespace) -> None:
    from lesionsoup.core.specs import ModelSpec, TrainSettings
    from lesionsoup.training.run import train_run

    with open_caches(args.cache, args.stage_caches) as caches:
        metadata = train_run(
            args.output,
            caches,
            ModelSpec.from_dict(args.model),
            TrainSettings.from_dict(args.settings),
            run_options(
                args,
                init=args.init,
                init_optimizer=args.init_optimizer,
                keep_optimizer=tuple(args.keep_optimizer),
            ),
        )
    log.info("finished at step %d: validation %s", metadata["step"], metadata["validation"])


def _warmup(args: argparse.Namespace) -> None:
    from lesionsoup.core.specs import ModelSpec, TrainSettings
    from lesionsoup.training.run import train_run
    from lesionsoup.training.run_folder import publish_init
    from lesionsoup.training.run_lock import run_lock

    run_dir = args.output.with_suffix("")
    # publish_init deletes the run folder: no one may resume it
    with run_lock(run_dir), open_caches(args.cache, args.stage_caches) as caches:
        train_run(
            run_dir,
            caches,
            ModelSpec.from_dict(args.model),
            TrainSettings.from_dict(args.settings),
            run_options(args, tracking_dir=args.output.with_suffix(".trackers")),
        )
        publish_init(run_dir, args.output)
    log.info("shared initialisation: %s", args.output)


def _fetch_weights(args: argparse.Namespace) -> None:
    from lesionsoup.core.atomic import atomic_write_json
    from lesionsoup.core.pretrained import fetch

    record = fetch(args.encoder, args.weights, args.cache)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, record)
    log.info(
        "%s: %s@%s sha256 %s", args.output, record["repo_id"], record["commit"], record["sha256"]
    )


def _pretrained_start(args: argparse.Namespace) -> None:
    import json

    from lesionsoup.core.checkpoint import save_checkpoint
    from lesionsoup.core.specs import ModelSpec
    from lesionsoup.merging.anchored import pretrained_start

    record = json.loads(args.record.read_text())
    spec = ModelSpec.from_dict(args.model)
    state, metadata = pretrained_start(spec, args.pretrained_cache, record)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.output, state, metadata)
    log.info(
        "%s: the pretrained start of %s (%s weights)",
        args.output,
        spec.encoder,
        spec.encoder_weights,
    )


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    add_cache_arguments(parser, "a dataset cache (repeatable)")
    parser.add_argument("--model", type=json_object, required=True, help="model spec (JSON)")
    parser.add_argument(
        "--settings", type=json_object, required=True, help="training settings (JSON)"
    )
    add_training_run_arguments(parser)


def _add_train(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "train",
        help="train one U-Net run (resumes if interrupted, skips if finished)",
        description="Train a U-Net on lesion-aware patches from one or more caches, from the "
        "combination's shared initialisation. Outputs best/last checkpoints, snapshots, "
        "log.csv, validation.csv and curves.png in the run folder.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="the checkpoint to start from (a shared initialisation or a base run's); without "
        "it the run starts from the pretrained encoder with a decoder and head from its seed",
    )
    add_options(parser, TRAIN_OPTIMIZER_OPTIONS)
    _add_training_arguments(parser)
    parser.set_defaults(handler=_train)


def _add_warmup(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "warmup",
        help="make a combination's shared initialisation (frozen-encoder warm-up)",
        description="Train the decoder with the encoder frozen and save the result as the "
        "shared initialisation every run of the combination starts from.",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="initialisation .safetensors to write"
    )
    _add_training_arguments(parser)
    parser.set_defaults(handler=_warmup)


def _add_fetch_weights(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "fetch-weights",
        help="fetch an encoder's pretrained weights once, for jobs without network",
        description="Put the pretrained weights of an encoder into a project cache (a folder "
        "laid out like HF_HOME) where training jobs read them with --pretrained-cache, without "
        "network. Weights already there are not fetched again (the network is not used); "
        "otherwise one quick request checks that the Hugging Face hub answers before they are "
        "downloaded. Writes a record of what is there: encoder, weights, repository, commit, "
        "file and its SHA-256.",
    )
    parser.add_argument(
        "--encoder", required=True, help="segmentation_models_pytorch encoder (model.encoder)"
    )
    parser.add_argument(
        "--weights", required=True, help="its pretrained weights (model.encoder_weights)"
    )
    parser.add_argument(
        "--cache", type=Path, required=True, help="project cache folder (HF_HOME-style)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="record .json to write")
    parser.set_defaults(handler=_fetch_weights)


def _add_pretrained_start(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "pretrained-start",
        help="save the model every independent run begins from (the pretrained encoder)",
        description="Build the model as an independent run starts it (the pretrained encoder "
        "weights, a decoder and head from seed 0) and save it with a sidecar of role "
        "pretrained-start naming the architecture and the weights' fetch record: the common "
        "start an encoder soup of independent runs merges around (model_stock, ties; "
        "`lesionsoup merge --anchor`).",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help=".safetensors to write")
    parser.add_argument("--model", type=json_object, required=True, help="model spec (JSON)")
    parser.add_argument(
        "--record",
        type=Path,
        required=True,
        help="the weights' fetch record (`lesionsoup fetch-weights -o`), kept in the sidecar",
    )
    add_pretrained_argument(parser)
    parser.set_defaults(handler=_pretrained_start)


REGISTER = (_add_fetch_weights, _add_pretrained_start, _add_warmup, _add_train)
