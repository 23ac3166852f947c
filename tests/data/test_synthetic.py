"""The synthetic trees, checked by reading the files back from disk."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.architecture import import_graph

from lesionsoup.data.datasets import ADAPTERS
from lesionsoup.data.synthetic.generator import generate
from lesionsoup.data.synthetic.maples import RELEASE_TREE as MAPLES_RELEASE

IMAGES = 12
SCALE = 0.1
SYNTHETIC = "lesionsoup.data.synthetic"
#: The only modules outside the demo generator's package that may import it.
SYNTHETIC_USERS = {"lesionsoup.commands.data"}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _read(path: Path) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert array is not None, f"unreadable: {path}"
    return array


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("first"), IMAGES, seed=7, scale=SCALE)


@pytest.fixture(scope="module")
def repeated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("second"), IMAGES, seed=7, scale=SCALE)


def users_of_synthetic(graph: dict[str, set[str]]) -> set[str]:
    """The modules outside ``SYNTHETIC`` that import a module of it."""
    inside = {SYNTHETIC, *(name for name in graph if name.startswith(f"{SYNTHETIC}."))}
    return {
        module for module, targets in graph.items() if module not in inside and targets & inside
    }


def test_the_real_pipeline_holds_no_synthetic_code() -> None:
    """Only the ``synth`` command imports the demo generator (an adapter never does)."""
    assert users_of_synthetic(import_graph()) == SYNTHETIC_USERS


def test_roots_and_no_leftovers(trees: dict[str, Path]) -> None:
    assert set(trees) == {*ADAPTERS, MAPLES_RELEASE}
    out = trees["IDRID"].parent
    assert sorted(p.name for p in out.iterdir()) == sorted(trees)
    assert not [p for p in out.rglob(".*")]  # no temporary files


def test_same_seed_gives_byte_identical_trees(
    trees: dict[str, Path], repeated: dict[str, Path]
) -> None:
    for name, root in trees.items():
        first, second = _files(root), _files(repeated[name])
        assert list(first) == list(second), name
        assert first == second, name


def test_different_seed_differs_and_streams_are_per_image(
    trees: dict[str, Path], tmp_path: Path
) -> None:
    other = generate(tmp_path / "other", IMAGES, seed=8, scale=SCALE, datasets=["RETLES"])
    images = trees["RETLES"] / "images_896x896"
    assert _files(other["RETLES"]) != _files(trees["RETLES"])
    alone = generate(
        tmp_path / "alone", IMAGES, seed=7, scale=SCALE, datasets=["RETLES"], workers=2
    )
    assert _files(alone["RETLES"]) == _files(trees["RETLES"])  # independent of other datasets
    assert len(list(images.iterdir())) == IMAGES


def test_idrid_layout(trees: dict[str, Path]) -> None:
    root = trees["IDRID"] / "A. Segmentation"
    train = sorted(p.name for p in (root / "1. Original Images" / "a. Training Set").iterdir())
    test = sorted(p.name for p in (root / "1. Original Images" / "b. Testing Set").iterdir())
    assert train == [f"IDRiD_{i:02d}.jpg" for i in range(1, 9)]
    assert test == [f"IDRiD_{i:02d}.jpg" for i in range(9, 13)]  # numbering continues
    truth = root / "2. All Segmentation Groundtruths"
    soft = 0
    for subset, names in (("a. Training Set", train), ("b. Testing Set", test)):
        for name in names:
            stem = name[:-4]
            image = _read(root / "1. Original Images" / subset / name)
            height, width = image.shape[:2]
            assert abs(width / height - 4288 / 2848) < 0.01
            for folder, suffix in (
                ("1. Microaneurysms", "MA"),
                ("2. Haemorrhages", "HE"),
                ("3. Hard Exudates", "EX"),
                ("5. Optic Disc", "OD"),
            ):
                mask = _read(truth / subset / folder / f"{stem}_{suffix}.tif")
                assert mask.shape == (height, width)
                assert set(np.unique(mask)) <= {0, 255}
            se = truth / subset / "4. Soft Exudates" / f"{stem}_SE.tif"
            if se.exists():
                soft += 1
                assert (_read(se) == 255).any()
    assert 0 < soft < IMAGES  # soft exudates missing for part of the images


def test_ddr_layout(trees: dict[str, Path]) -> None:
    root = trees["DDR"] / "lesion_segmentation"
    assert sorted(p.name for p in root.iterdir()) == ["test", "train", "valid"]
    label_folders = {"train": "label", "valid": "segmentation label", "test": "label"}
    sizes, ratios, empty, count = set(), set(), 0, 0
    for split, labels in label_folders.items():
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(["image", labels])
        for image_path in (root / split / "image").glob("*.jpg"):
            count += 1
            assert re.fullmatch(r"\d{3}-\d{4}-\d{3}", image_path.stem)
            image = _read(image_path)
            sizes.add(image.shape[:2])
            ratios.add(round(image.shape[1] / image.shape[0], 2))
            for lesion in ("EX", "HE", "MA", "SE"):
                mask = _read(root / split / labels / lesion / f"{image_path.stem}.tif")
                assert mask.shape == image.shape[:2]
                empty += not mask.any()
    assert count == IMAGES
    assert empty >= 3  # DDR writes all-black masks
    assert len(sizes) >= 3 and len(ratios) >= 2


def test_fgadr_layout(trees: dict[str, Path]) -> None:
    root = trees["FGADR"] / "Seg-set"
    ids = sorted(p.stem for p in (root / "Original_Images").glob("*.png"))
    assert len(ids) == IMAGES and all(re.fullmatch(r"\d{4}_\d", i) for i in ids)
    folders = (
        "Microaneurysms_Masks",
        "Hemohedge_Masks",
        "HardExudate_Masks",
        "SoftExudate_Masks",
        "IRMA_Masks",
        "Neovascularization_Masks",
    )
    grey_levels = 0
    for image_id in ids:
        image = _read(root / "Original_Images" / f"{image_id}.png")
        assert image.shape[0] == image.shape[1]
        for folder in folders:
            mask = _read(root / folder / f"{image_id}.png")
            assert mask.shape == image.shape[:2]
            grey_levels += int(((mask > 0) & (mask < 255)).sum())
    assert grey_levels > 0  # anti-aliased edges
    lines = (root / "DR_Seg_Grading_Label.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"{i}.png" for i in ids]  # no header
    assert all(re.fullmatch(r"\d{4}_\d\.png,[0-4]", line) for line in lines)


def test_retles_layout(trees: dict[str, Path]) -> None:
    root = trees["RETLES"]
    names = sorted(p.stem for p in (root / "images_896x896").glob("*.jpg"))
    assert len(names) == IMAGES
    patients = [re.fullmatch(r"(\d+)_(left|right)", name).group(1) for name in names]
    assert any(patients.count(p) == 2 for p in patients)  # both eyes
    known = {
        "microaneurysm",
        "retinal_hemorrhage",
        "preretinal_hemorrhage",
        "vitreous_hemorrhage",
        "hard_exudate",
        "cotton_wool_spots",
        "neovascularization",
        "fibrous_proliferation",
    }
    folders = {p.name for p in (root / "lesion_segs_896x896").iterdir()}
    assert folders < set(names)  # some images have no mask folder
    values: set[int] = set()
    lesion_sets = []
    for name in folders:
        image = _read(root / "images_896x896" / f"{name}.jpg")
        assert image.shape[0] == image.shape[1]
        files = {p.stem for p in (root / "lesion_segs_896x896" / name).glob("*.png")}
        assert files and files <= known
        lesion_sets.append(files)
        for lesion in files:
            mask = _read(root / "lesion_segs_896x896" / name / f"{lesion}.png")
            assert mask.shape == image.shape[:2]
            values |= set(np.unique(mask).tolist())
    assert values == {0, 127, 255}
    assert any(len(files) < 4 for files in lesion_sets)  # missing file: no lesion
    grades = (root / "dr_grades.csv").read_text().splitlines()
    assert grades[0] == "image id,grade"
    assert sorted(line.split(",")[0] for line in grades[1:]) == names


def test_maples_export_layout(trees: dict[str, Path]) -> None:
    root = trees["MAPLES"]
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]
    fields = {
        "exudates",
        "hemorrhages",
        "microaneurysms",
        "cottonWoolSpots",
        "vessels",
        "opticDisc",
    }
    count = 0
    for split in ("train", "test"):
        assert {p.name for p in (root / split).iterdir()} == fields | {"fundus"}
        for fundus in (root / split / "fundus").glob("*.jpg"):
            count += 1
            assert re.fullmatch(r"\d{8}_\d{5}_\d{4}_PP", fundus.stem)
            image = _read(fundus)
            assert image.shape[0] == image.shape[1] == 150  # 1500 x scale
            for field in fields:
                mask = _read(root / split / field / f"{fundus.stem}.png")
                assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
    assert count == IMAGES


def test_maples_release_layout(trees: dict[str, Path]) -> None:
    root = trees[MAPLES_RELEASE]
    labels = root / "MAPLES-DR"
    split_folders = sorted(p.name for p in labels.iterdir())
    assert split_folders == ["Train", "test"]  # case varies on purpose
    base_folders = sorted(p.name for p in root.iterdir() if p.name != "MAPLES-DR")
    assert "base12" in base_folders and all(b.lower().startswith("base") for b in base_folders)
    messidor = {p.stem: p for p in root.glob("*/*.tif")}
    labelled = set()
    biomarkers = ("Exudates", "CottonWoolSpots", "Hemorrhages", "Microaneurysms", "Vessels")
    for split in split_folders:
        for path in (labels / split / "OpticDisc").glob("*.png"):
            labelled.add(path.stem)
            height, width = _read(messidor[path.stem]).shape[:2]
            assert (width, height) in {(144, 96), (224, 149), (230, 154)}  # MESSIDOR x 0.1
            for biomarker in biomarkers:
                assert _read(labels / split / biomarker / path.name).shape == (height, width)
    assert len(labelled) == IMAGES
    assert labelled == {p.stem for p in (trees["MAPLES"]).glob("*/fundus/*.jpg")}
    assert len(set(messidor) - labelled) >= 2  # unlabelled MESSIDOR images


def test_regeneration_replaces_the_previous_tree(tmp_path: Path) -> None:
    stale = tmp_path / "FGADR" / "stale.txt"
    stale.parent.mkdir()
    stale.write_text("old")
    (tmp_path / "FGADR.partial").mkdir()  # an interrupted earlier run
    roots = generate(tmp_path, 2, seed=1, scale=SCALE, datasets=["FGADR"])
    assert not stale.exists() and not (tmp_path / "FGADR.partial").exists()
    assert len(list((roots["FGADR"] / "Seg-set" / "Original_Images").iterdir())) == 2


def _mask_pixels(root: Path, folder: str) -> int:
    truth = root / "A. Segmentation" / "2. All Segmentation Groundtruths"
    return sum(int((_read(path) > 0).sum()) for path in sorted(truth.glob(f"*/{folder}/*.tif")))


def test_lesion_sizes_enlarge_the_named_class_and_keep_the_rest(
    trees: dict[str, Path], tmp_path: Path
) -> None:
    larger = generate(
        tmp_path, IMAGES, seed=7, scale=SCALE, datasets=["IDRID"], lesion_sizes={"MA": 3}
    )["IDRID"]
    plain = trees["IDRID"]
    ma = "1. Microaneurysms"
    assert _mask_pixels(larger, ma) > 2 * _mask_pixels(plain, ma)  # 1 px floor: not 9x
    for folder in ("2. Haemorrhages", "3. Hard Exudates", "5. Optic Disc"):  # MA cover none
        assert _mask_pixels(larger, folder) == _mask_pixels(plain, folder), folder
    again = generate(
        tmp_path / "again", IMAGES, seed=7, scale=SCALE, datasets=["IDRID"], lesion_sizes={"MA": 3}
    )["IDRID"]
    assert _files(again) == _files(larger)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"datasets": ["IDRID", "EyePACS"]}, "unknown synthetic datasets"),
        ({"images": 0}, "images per dataset"),
        ({"scale": 0}, "scale"),
        ({"styles": {"coarse": {"wobble": 1}}}, "unknown parameters"),
        ({"lesion_sizes": {"XX": 2}}, "unknown lesions"),
        ({"lesion_sizes": {"MA": 0}}, "lesion_sizes must be > 0"),
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"images": 2, "seed": 0, "scale": SCALE, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, **arguments)
