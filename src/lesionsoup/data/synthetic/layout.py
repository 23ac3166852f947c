"""How the synthetic generator imitates a dataset's native tree, and how a writer saves files.

``lesionsoup.data.synthetic.generator`` renders every image of every dataset with
a registered ``SyntheticLayout`` (``lesionsoup.data.synthetic.registry``) and
hands the photograph, its annotated masks and the image's own random stream to
the layout's ``write``, which saves them under the dataset's folder and file
names with ``save``. Each dataset's writer is a module of this package that
takes those names from the adapter module whose ``scan`` reads the layout back,
so the two directions cannot drift apart unnoticed
(``tests/data/test_synthetic_index.py`` reads every synthetic tree back).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesions import Lesion
from lesionsoup.data.synthetic.annotation_style import AnnotationStyle
from lesionsoup.data.synthetic.fundus import SyntheticFundus

_JPEG = [
    *(cv2.IMWRITE_JPEG_QUALITY, 92),
    *(cv2.IMWRITE_JPEG_OPTIMIZE, 0),
    *(cv2.IMWRITE_JPEG_PROGRESSIVE, 0),
]
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_TIFF = [cv2.IMWRITE_TIFF_COMPRESSION, 5]  # LZW
_PARAMS = {".jpg": _JPEG, ".png": _PNG, ".tif": _TIFF}


def partial_root(out: Path, tree: str) -> Path:
    """Where the tree ``tree`` is built; it is renamed to ``out / tree`` once complete."""
    return out / f"{tree}.partial"


@dataclass(frozen=True)
class SyntheticImage:
    """One image to render and write, with everything needed to do so in any process."""

    dataset: str  # the dataset whose tree the image belongs to
    index: int  # position among the dataset's images (the layout's ``names`` order)
    name: str
    split: str  # the official split, "" where the dataset has none
    seed: np.random.SeedSequence
    scale: float  # native sizes are multiplied by this
    style: AnnotationStyle
    out: Path
    layout: SyntheticLayout
    lesion_sizes: Mapping[Lesion, float]  # size factors of enlarged lesion classes

    def tree(self, name: str | None = None) -> Path:
        """The folder being built for tree ``name`` (by default the dataset's own)."""
        return partial_root(self.out, name or self.dataset)


@dataclass(frozen=True)
class Written:
    """What the tree-level files (grade tables) need to know of each written image."""

    name: str
    grade: int


Writer = Callable[
    [SyntheticImage, SyntheticFundus, dict[Lesion, np.ndarray], np.random.Generator], None
]
Summary = Callable[[Path, list[Written]], None]


@dataclass(frozen=True)
class SyntheticLayout:
    """How the synthetic generator imitates one dataset's native tree.

    ``stream`` is the first spawn key of the layout's per-image random streams:
    fixed and unique (``registry.register`` checks), so that registering another dataset
    changes no image of this one. ``names`` gives the image names for a
    requested number of images (a companion may give fewer or more). ``write``
    saves one rendered image and its masks; ``summary`` writes tree-level files
    (grade tables) once every image is done. ``trees`` are further trees the
    writer fills next to the dataset's own (a second layout of the same data);
    a ``companion`` adds unannotated photographs to them (MESSIDOR images that
    MAPLES-DR does not label).
    """

    stream: int
    sizes: tuple[tuple[int, int], ...]  # native (height, width) choices, one drawn per image
    names: Callable[[int], list[str]]
    write: Writer
    healthy_eyes: bool = True  # every sixth image shows no lesion
    extras: bool = False  # IRMA and NV are drawn (the dataset annotates them)
    summary: Summary | None = None
    trees: tuple[str, ...] = ()
    companion: SyntheticLayout | None = None

    @property
    def streams(self) -> tuple[int, ...]:
        """The spawn keys this layout and its companions take."""
        return (self.stream, *(self.companion.streams if self.companion else ()))


def save(path: Path, array: np.ndarray) -> None:
    """Write an RGB image or a single-channel mask, format by suffix, through a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = array[..., ::-1] if array.ndim == 3 else array
    ok, encoded = cv2.imencode(path.suffix, np.ascontiguousarray(pixels), _PARAMS[path.suffix])
    if not ok:
        raise OSError(f"{path}: could not encode the image")
    atomic_write_bytes(path, encoded.tobytes())


def binary(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as the 0/255 image most datasets ship."""
    return mask.astype(np.uint8) * 255
