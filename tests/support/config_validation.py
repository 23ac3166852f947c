"""A config through the Snakefile's own schema validation, as the workflow reads it."""

from __future__ import annotations

import re

from lesionsoup.plan.validation import validate_config
from support import REPO

SCHEMAS = REPO / "workflow" / "schemas"


def snakefile_validation(config: dict) -> dict:
    """``config`` through the Snakefile's own ``validate`` calls, in their order."""
    snakefile = (REPO / "Snakefile").read_text()
    calls = re.findall(r'^validate_config\((.+), SCHEMAS / "(.+)", VERBOSE\)$', snakefile, re.M)
    assert calls, "the Snakefile validates its config"
    for target, schema in calls:
        validate_config(eval(target, {"config": config}), SCHEMAS / schema)  # noqa: S307
    return config
