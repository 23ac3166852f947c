import numpy as np
import pytest

from lesionsoup.core.lesions import (
    FOV_BIT,
    IGNORE_BIT,
    TRAINED,
    Lesion,
    pack,
    parse_lesions,
    unpack,
)


def test_bits_are_distinct_single_bits():
    bits = [lesion.bit for lesion in Lesion] + [FOV_BIT, IGNORE_BIT]
    assert len(set(bits)) == len(bits)
    assert all(bit & (bit - 1) == 0 for bit in bits)
    assert max(bits) <= 128


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    masks = {lesion: rng.random((5, 7)) > 0.5 for lesion in TRAINED}
    fov = rng.random((5, 7)) > 0.3
    ignore = rng.random((5, 7)) > 0.8
    labels = pack(masks, fov, ignore)
    unpacked = unpack(labels, TRAINED)
    for channel, lesion in enumerate(TRAINED):
        np.testing.assert_array_equal(unpacked[channel], masks[lesion])
    np.testing.assert_array_equal((labels & FOV_BIT) > 0, fov)
    np.testing.assert_array_equal((labels & IGNORE_BIT) > 0, ignore)


def test_pack_refuses_a_mask_of_another_shape():
    fov = np.ones((3, 4), bool)
    with pytest.raises(ValueError, match=r"shape \(1, 4\)"):
        pack({Lesion.EX: np.ones((1, 4), bool)}, fov)  # would broadcast over every row
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        pack({}, fov, ignore=np.ones(4, bool))


def test_parse_lesions_accepts_se_alias_and_rejects_unknown():
    assert parse_lesions(["ex", "SE"]) == (Lesion.EX, Lesion.CWS)
    with pytest.raises(ValueError, match="XYZ"):
        parse_lesions(["XYZ"])
