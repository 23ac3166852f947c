"""Models as segmentation_models_pytorch folders, which ``smp.from_pretrained`` loads.

``lesionsoup export --format smp`` writes the layout of ``lesionsoup.deploy.export`` in
which every checkpoint is also a folder of segmentation_models_pytorch::

    DIR/config.json          smp's model arguments and ``_model_class`` (its save_pretrained's)
    DIR/model.safetensors    the weights as smp's own U-Net holds them (``smp_unet``: the
                             encoder stages a shallow ``encoder_depth`` never runs are
                             zero-filled, so the file loads strictly), with the lesionsoup
    DIR/model.json           sidecar: lesions, head, training resolution, history

An ensemble keeps one such folder per member, ``DIR/members/member_NN/``, and its
``ensemble.json`` states the averaging rule (``AVERAGING``). ``README.md`` carries the
Hugging Face model card header, so the folder can be uploaded to the Hub as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCardData

from lesionsoup.core.atomic import atomic_write_json
from lesionsoup.core.checkpoint import SUFFIX, CheckpointError, load_checkpoint, save_checkpoint
from lesionsoup.core.model import smp_unet
from lesionsoup.deploy.models import ModelInfo
from lesionsoup.inference.predictor import spec_of
from lesionsoup.training.sampling import IMAGENET_MEAN, IMAGENET_STD

#: The file ``smp.from_pretrained`` reads the model's arguments from.
CONFIG_FILE = "config.json"
#: How ``lesionsoup.inference.predictor`` combines an ensemble's members.
AVERAGING = {
    "rule": "weighted-mean-of-probabilities",
    "description": "each member's per-lesion probabilities (sigmoid of its logits, or softmax "
    "without the background channel), averaged with the normalised 'weights'",
}


def write_smp_model(checkpoint: Path, folder: Path) -> Path:
    """Write ``checkpoint`` into ``folder`` as an smp folder; returns its weights file."""
    state, metadata = load_checkpoint(checkpoint)
    spec = spec_of(checkpoint, metadata)
    try:
        model = smp_unet(spec, state)
    except ValueError as error:
        raise CheckpointError(f"{checkpoint}: {error}") from None
    config = {**model.config, "_model_class": type(model).__name__}
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"model{SUFFIX}"
    save_checkpoint(weights, model.state_dict(), metadata)
    atomic_write_json(folder / CONFIG_FILE, config)
    return weights


def smp_model_files(info: ModelInfo, folder: Path) -> list[Path]:
    """Each member of ``info`` as an smp folder in ``folder`` (``folder`` itself for a
    single or merged model), in member order; returns their weights files."""
    if info.method != "ensemble":
        return [write_smp_model(info.path, folder)]
    return [
        write_smp_model(member, folder / "members" / f"member_{index:02d}")
        for index, member in enumerate(info.members)
    ]


def smp_readme(card: str, info: ModelInfo) -> str:
    """The model card with the Hub's header and how to run the model with smp alone."""
    header = ModelCardData(
        library_name="segmentation-models-pytorch",
        pipeline_tag="image-segmentation",
        tags=["lesionsoup", "retina", "fundus", "lesion-segmentation"],
    ).to_yaml()
    target = "THIS_FOLDER" if info.method != "ensemble" else "THIS_FOLDER/members/member_00"
    head = info.member_metadata[0].get("architecture", {}).get("head", "sigmoid")
    usage = [
        "## Use with segmentation_models_pytorch",
        "",
        "```python",
        "import segmentation_models_pytorch as smp",
        "",
        f'model = smp.from_pretrained("{target}").eval()',
        "```",
        "",
        f"Input: RGB scaled to [0, 1], normalised with mean {_rounded(IMAGENET_MEAN)} and "
        f"standard deviation {_rounded(IMAGENET_STD)}, sides multiples of 32, after "
        "lesionsoup's field-of-view crop and resize (`lesionsoup predict` does all of it). "
        f"Output: logits; the head is **{head}** "
        f"({'a background channel first, then ' if head == 'softmax' else ''}"
        f"one channel per lesion: {', '.join(info.lesions)}).",
    ]
    if info.method == "ensemble":
        usage.append(
            f"Ensemble: average the members' probabilities ({AVERAGING['rule']}, "
            "weights in `ensemble.json`)."
        )
    return f"---\n{header}\n---\n\n{card}\n" + "\n".join(usage) + "\n"


def _rounded(values: Any) -> list[float]:
    return [round(float(value), 3) for value in values]
