"""RETLES's synthetic stand-in (layout: ``lesionsoup.data.datasets.retles``).

Mask files and folders only where there are lesions, a share of the lesions
marked ``EXCLUDED_VALUE`` (127), haemorrhages split into retinal and preretinal
ones, and the grade table.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.retles import (
    EXCLUDED_VALUE,
    EYES,
    GRADES_FILE,
    IMAGES_FOLDER,
    MASKS_FOLDER,
)
from lesionsoup.data.synthetic.fundus import SyntheticFundus
from lesionsoup.data.synthetic.layout import SyntheticImage, SyntheticLayout, Written, save
from lesionsoup.data.synthetic.registry import register

#: Share of lesion components marked excluded, and of haemorrhages made preretinal.
EXCLUDED_SHARE = 0.15
PRERETINAL_SHARE = 0.15


def _names(count: int) -> list[str]:
    """``<patient>_<eye>``: both eyes for most patients, one eye for every fourth."""
    names: list[str] = []
    patient = 0
    while len(names) < count:
        eyes = EYES[:1] if patient % 4 == 3 else EYES
        names += [f"{10001 + 7 * patient}_{eye}" for eye in eyes]
        patient += 1
    return names[:count]


def _with_excluded(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """255 on the lesion, ``EXCLUDED_VALUE`` on the components the authors excluded."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    values = np.where(rng.random(count) < EXCLUDED_SHARE, EXCLUDED_VALUE, 255).astype(np.uint8)
    values[0] = 0
    return values[labels]


def _write(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    root = image.tree()
    save(root / IMAGES_FOLDER / f"{image.name}.jpg", fundus.image)
    haemorrhages = cv2.connectedComponents(masks[Lesion.HE].astype(np.uint8), connectivity=8)[1]
    preretinal_ids = np.flatnonzero(rng.random(haemorrhages.max() + 1) < PRERETINAL_SHARE)
    preretinal = np.isin(haemorrhages, preretinal_ids[preretinal_ids > 0])
    files = {
        "microaneurysm": masks[Lesion.MA],
        "retinal_hemorrhage": masks[Lesion.HE] & ~preretinal,
        "preretinal_hemorrhage": preretinal,
        "hard_exudate": masks[Lesion.EX],
        "cotton_wool_spots": masks[Lesion.CWS],
        "neovascularization": masks[Lesion.NV],
    }
    for native_name, mask in files.items():
        if mask.any():  # no file, and no folder for a healthy eye, where there is no lesion
            save(root / MASKS_FOLDER / image.name / f"{native_name}.png", _with_excluded(mask, rng))


def _write_grades(root: Path, rows: list[Written]) -> None:
    lines = "image id,grade\n" + "".join(f"{row.name},{row.grade}\n" for row in rows)
    atomic_write_bytes(root / GRADES_FILE, lines.encode())


register(
    "RETLES",
    SyntheticLayout(
        stream=3,
        sizes=((896, 896),),
        names=_names,
        write=_write,
        extras=True,
        summary=_write_grades,
    ),
)
