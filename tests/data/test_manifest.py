from pathlib import Path

import pandas as pd
import pytest

from lesionsoup.data.manifest import (
    COLUMNS,
    MASK_COLUMNS,
    ManifestError,
    join_mask_paths,
    manifest_from_rows,
    read_manifest,
    split_mask_paths,
    write_manifest,
)


def row(image_id: str, split: str = "train", **masks: str) -> dict[str, object]:
    cells = {column: "" for column in MASK_COLUMNS} | masks
    return {
        "image_id": image_id,
        "dataset": "DDR",
        "split": split,
        "patient": image_id,
        "image_path": f"/data/{image_id}.jpg",
        **cells,
        "width": 12,
        "height": 8,
    }


def sample() -> pd.DataFrame:
    return manifest_from_rows(
        [
            row("a", mask_EX="/data/a_ex.tif", mask_HE="/data/a_1.png|/data/a_2.png"),
            row("b", "test"),
        ],
        "sample",
    )


def test_columns_are_in_contract_order():
    assert COLUMNS[:5] == ("image_id", "dataset", "split", "patient", "image_path")
    assert COLUMNS[5:-3] == tuple(f"mask_{n}" for n in ("EX", "HE", "MA", "CWS", "IRMA", "NV"))
    assert COLUMNS[-3:] == ("mask_roi", "width", "height")


def test_round_trip_keeps_values_and_types(tmp_path):
    path = tmp_path / "sub" / "manifest.csv"
    write_manifest(sample(), path)
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, sample(), check_dtype=False)
    assert back["width"].dtype == "int64"
    assert back.loc[1, "mask_EX"] == ""
    assert [p.name for p in split_mask_paths(back.loc[0, "mask_HE"])] == ["a_1.png", "a_2.png"]
    assert sorted(p.name for p in tmp_path.joinpath("sub").iterdir()) == ["manifest.csv"]


def test_invalid_frame_is_not_written(tmp_path):
    frame = sample()
    frame.loc[0, "split"] = "holdout"
    path = tmp_path / "manifest.csv"
    with pytest.raises(ManifestError, match="holdout"):
        write_manifest(frame, path)
    assert list(tmp_path.iterdir()) == []


def test_mask_cells_join_and_split():
    paths = [Path("/x/a.png"), Path("/x/b.png")]
    assert split_mask_paths(join_mask_paths(paths)) == paths
    assert join_mask_paths([]) == "" and split_mask_paths("") == []
    with pytest.raises(ValueError, match="may not contain"):
        join_mask_paths(["/x/a|b.png"])


def edit_csv(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "manifest.csv"
    write_manifest(sample(), path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("image_id,", "id,", "columns must be"),
        (",12,8", ",twelve,8", "'width' must hold positive integers"),
        (",12,8", ",0,8", "'width' must hold positive integers"),
        (",test,", ",holdout,", "unknown split"),
        ("/data/b.jpg", "data/b.jpg", "not absolute"),
        ("/data/a_ex.tif", "a_ex.tif", "not absolute"),
        ("\nb,", "\na,", "repeats in DDR: /data/a.jpg and /data/b.jpg"),
        ("\nb,", "\n../b,", "not usable as a file name"),
        (",DDR,test,b,", ",DDR,test,,", "'patient' is empty"),
    ],
)
def test_read_rejects_broken_manifests_naming_the_file(tmp_path, old, new, problem):
    path = edit_csv(tmp_path, old, new)
    with pytest.raises(ManifestError, match=problem) as error:
        read_manifest(path)
    assert str(path) in str(error.value)


def test_read_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "none.csv")
