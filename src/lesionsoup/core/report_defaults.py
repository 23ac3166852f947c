"""The ``report`` section's defaults: the one table the planner fills a study's config from
(``lesionsoup.plan.report.report_settings``) and the report commands and analyses default
to (``lesionsoup.plan.options``, the analyses' option classes).
``workflow/schemas/report.schema.yaml`` documents the same values; a test holds them equal
(a YAML schema cannot import Python)."""

from __future__ import annotations

from typing import Any

from lesionsoup.core.merge_rules import BN_POLICIES
from lesionsoup.core.style_features import STYLE_FEATURES

REPORT_DEFAULTS: dict[str, Any] = {
    "metric": "ap",
    "method": "single",
    "coarse": ["RETLES"],
    "pr_top": 3,
    "qualitative": {"images": 3, "models": {}, "default_models": 3},
    "annotation_style": {
        "clusters": 2,
        "features": list(STYLE_FEATURES),
        "resamples": 200,
        "seed": 0,
        "settings": {},
    },
    "connectivity": {
        "points": 11,
        "bn_policies": [policy for policy in BN_POLICIES if policy != "copy-best"],
        "sharpness": {"radii": [0.05, 0.1, 0.2], "directions": 3, "seed": 0},
        "pairs": {},
    },
    "size_curves": {"pool": ["grid"], "max_members": 3},
}
