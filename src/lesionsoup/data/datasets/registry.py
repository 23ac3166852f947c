"""The dataset registry: every adapter module registers its dataset when imported.

As in timm, an adapter module ends with ``register(DatasetAdapter(...))`` and the
package ``lesionsoup.data.datasets`` imports every adapter module, so importing
the package fills ``ADAPTERS``. Whatever needs to know the datasets reads this
registry instead of keeping a list of its own: indexing, the synthetic
generator (``lesionsoup.data.synthetic``), the default annotation styles,
the command-line help, and the test that the workflow's config schema offers
exactly the registered datasets and options (Snakemake validates against a
schema file, so the file stays and ``tests/data/test_dataset_registry.py`` holds it
to the registry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionsoup.core.combos import DATASET_NAME
from lesionsoup.data.datasets.native import NativeImage

#: The option every dataset takes: its seeded split (``lesionsoup.data.splits.SplitOptions``).
SPLIT_OPTION = "split"
#: Dataset names key the config, file names and combinations (``DDR+IDRID``), whose
#: patterns in the workflow accept upper-case letters and digits only (``core.combos``).
NAME = DATASET_NAME
#: How a dataset's graders draw: tight outlines, or dilated, merged blobs (``style``; what
#: each means in pixels is ``lesionsoup.data.synthetic.annotation_style``).
FINE, COARSE = "fine", "coarse"


def same_patient_as_image(image_id: str) -> str:
    """The patient key of datasets that record no patient: each image is its own."""
    return image_id


@dataclass(frozen=True)
class DatasetAdapter:
    """Everything lesionsoup knows about one dataset, in one record.

    ``scan`` reads the native tree under a root with the adapter's own options and
    ``native.UNRECOGNISED_OPTION`` (what to do with entries it does not read);
    ``options`` holds the JSON schema of each of them, whose ``default`` is what
    ``scan`` gets when the user sets none. ``patient`` maps an image id to the
    key that seeded splits keep together. ``official_splits`` are the real
    dataset's official parts and their sizes (empty where it has none): they
    decide which ``split`` options the config offers and the shares of the
    synthetic stand-in. ``mask_threshold`` and ``uncertain_value`` say how its
    mask files read (anti-aliased edges count from 1; a value that marks
    findings its authors excluded, treated as ``uncertain_as`` unless the config
    says otherwise), ``lesion_rules`` any lesion's own rule
    (``preprocess.MaskRules``); ``style`` is the annotation style of its
    graders (``FINE`` or ``COARSE``).
    """

    name: str
    scan: Callable[[Path, Mapping[str, Any]], list[NativeImage]]
    official_splits: Mapping[str, int] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    patient: Callable[[str], str] = same_patient_as_image
    mask_threshold: int = 128
    uncertain_value: int | None = None
    uncertain_as: str = "ignore"
    lesion_rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    style: str = FINE

    @property
    def option_names(self) -> list[str]:
        """Every option ``index_dataset`` accepts for this dataset."""
        return [*self.options, SPLIT_OPTION]

    @property
    def option_defaults(self) -> dict[str, Any]:
        """What ``scan`` gets for each of its options that the user leaves out."""
        return {name: schema["default"] for name, schema in self.options.items()}


#: Registered adapters by dataset name, in registration order.
ADAPTERS: dict[str, DatasetAdapter] = {}


def register(adapter: DatasetAdapter) -> None:
    """Add ``adapter`` to ``ADAPTERS``; a bad or taken name fails."""
    if not NAME.fullmatch(adapter.name):
        raise ValueError(f"dataset name {adapter.name!r} must match {NAME.pattern}")
    if adapter.name in ADAPTERS:
        raise ValueError(f"dataset {adapter.name!r} is registered twice")
    ADAPTERS[adapter.name] = adapter


def get_adapter(name: str) -> DatasetAdapter:
    """The adapter registered as ``name`` in any letter case (people type ``idrid``), or a
    ValueError listing the known names."""
    adapter = ADAPTERS.get(name.upper())
    if adapter is None:
        raise ValueError(f"unknown dataset '{name}'; known: {sorted(ADAPTERS)}")
    return adapter


def default_styles() -> dict[str, str]:
    """The annotation style of each registered dataset's graders, by dataset name."""
    return {name: adapter.style for name, adapter in ADAPTERS.items()}
