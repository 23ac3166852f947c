"""A merging config of two datasets (tests/plan/test_ingredients.py), shared with the averaging
analysis tests."""

from __future__ import annotations


def make_config(**merging) -> dict:
    return {
        "datasets": {"IDRID": {}, "DDR": {}},
        "training": {
            "combinations": ["IDRID"],
            "seeds": [0, 1],
            "defaults": {"batch_size": 4, "patch_size": 64},
            "recipes": {"base": {"steps": 30, "lr": 0.002, "warmup_steps": 5}},
        },
        "merging": {
            "grid": {
                "recipe": "base",
                "seeds": [0],
                "values": {"lr": [0.001, 0.0025], "augmentation": ["light", "medium"]},
            },
            "swa": {
                "base": "base",
                "settings": {"steps": 12, "lr": 5e-4, "start_lr": 2e-3, "cycle_steps": 4},
            },
            "fgg": {"settings": {"steps": 8, "lr": 1e-5, "min_lr": 1e-8, "cycle_steps": 4}},
            "soups": {"uniform": {}, "swa": {}, "GoU": {"ingredients": ["grid", "fgg"]}},
            "ensembles": {"top2": {"top": 2}},
            **merging,
        },
    }
