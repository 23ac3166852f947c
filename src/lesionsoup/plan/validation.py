"""The config checked against its JSON schemas, with defaults filled in, and a short error.

``snakemake.utils.validate`` reports a bad value with the whole schema it failed
(pages of JSON for one misspelt key); ``validate_config`` says first which key,
what is wrong and what is allowed, and adds the validator's full report only
under ``snakemake --verbose``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: What each JSON-schema keyword allows, read from the failing schema.
_ALLOWED = {
    "enum": lambda schema: ", ".join(map(repr, schema["enum"])),
    "const": lambda schema: repr(schema["const"]),
    "type": lambda schema: str(schema["type"]),
    "pattern": lambda schema: f"text matching {schema['pattern']}",
    "additionalProperties": lambda schema: ", ".join(sorted(schema.get("properties", {}))),
    "propertyNames": lambda schema: str(schema["propertyNames"].get("enum", "")),
}


class ConfigError(ValueError):
    """A config value the schema refuses; the message names the key."""


def validate_config(config: Mapping[str, Any], schema: Path, verbose: bool = False) -> None:
    """Validate ``config`` (in place, filling the schema's defaults) or raise ``ConfigError``."""
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(schema))
    except WorkflowError as error:
        cause = error.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        message = short_message(jsonschema.exceptions.best_match([cause]))
        if verbose:
            raise ConfigError(f"{message}\n\n{cause}") from None
        raise ConfigError(f"{message} (snakemake --verbose shows the schema)") from None


def short_message(error: Any) -> str:
    """``config key: problem; allowed: ...`` of a ``jsonschema.ValidationError``."""
    path = [str(part) for part in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        path.append(_unexpected(error.instance, error.schema))
    key = ".".join(path) or "(the top level)"
    allowed = _ALLOWED.get(error.validator)
    suffix = f"; allowed: {allowed(error.schema)}" if allowed else ""
    return f"config key {key}: {error.message}{suffix}"


def _unexpected(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    """The first key of ``instance`` that neither the schema's properties nor its
    patternProperties name: the misspelt one."""
    patterns = [re.compile(pattern) for pattern in schema.get("patternProperties", {})]
    named = set(schema.get("properties", {}))
    return min(
        (str(key) for key in instance if key not in named and not _matches(patterns, key)),
        default="",
    )


def _matches(patterns: Iterable[re.Pattern[str]], key: object) -> bool:
    return any(pattern.search(str(key)) for pattern in patterns)
