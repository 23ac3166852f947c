"""Defaults of the config's report section."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from support import REPO

from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.plan.report import report_settings


def test_absent_section_gives_the_defaults() -> None:
    assert report_settings({}) == REPORT_DEFAULTS


def schema_defaults(node: dict[str, Any]) -> Any:
    """The defaults a schema node documents: a section's (an empty object whose keys have
    defaults) key by key, else the node's own."""
    keys = node.get("properties", {})
    if node.get("default") == {} and any("default" in key for key in keys.values()):
        return {name: schema_defaults(key) for name, key in keys.items()}
    return node.get("default")


def test_the_schema_documents_exactly_these_defaults() -> None:
    """``report.schema.yaml`` documents the one table of defaults (a YAML schema cannot
    import Python, so this test holds the two equal, nested sections included)."""
    schema = REPO / "workflow" / "schemas" / "report.schema.yaml"
    assert schema_defaults(yaml.safe_load(schema.read_text())) == REPORT_DEFAULTS


def test_nested_values_override_only_what_they_name() -> None:
    settings = report_settings({"report": {"metric": "auroc", "connectivity": {"points": 5}}})
    assert settings["metric"] == "auroc"
    assert settings["connectivity"]["points"] == 5
    assert settings["connectivity"]["bn_policies"] == ["average", "recompute"]
    assert settings["qualitative"] == REPORT_DEFAULTS["qualitative"]


def test_unknown_headline_metric_is_refused_at_planning() -> None:
    assert report_settings({"report": {"metric": "aupr_11pt"}})["metric"] == "aupr_11pt"
    with pytest.raises(ValueError, match=r"report.metric: unknown metric 'aupr'; known: \['ap'"):
        report_settings({"report": {"metric": "aupr"}})


def test_unknown_key_is_named_with_its_section() -> None:
    with pytest.raises(ValueError, match=r"report.connectivity: unknown keys \['pionts'\]"):
        report_settings({"report": {"connectivity": {"pionts": 5}}})


def test_jobs_of_the_report_section() -> None:
    from lesionsoup.plan.evaluation import EvaluatedModel
    from lesionsoup.plan.report import connectivity_inputs, qualitative_models, report_targets

    pair = {"a": "x.safetensors", "b": "y.safetensors", "combo": "DDR+IDRID"}
    config = {"report": {"connectivity": {"pairs": {"xy": pair}}}}
    assert connectivity_inputs(config, "xy") == {
        "a": "x.safetensors",
        "b": "y.safetensors",
        "caches": ["results/cache/DDR", "results/cache/IDRID"],
    }
    with pytest.raises(ValueError, match="unknown connectivity pair 'z'"):
        connectivity_inputs(config, "z")
    assert "results/analysis/connectivity/xy.png" in report_targets(config, ["IDRID"])
    assert "results/report/qualitative/IDRID.png" in report_targets(config, ["IDRID"])
    assert "results/report/reliability.png" in report_targets(config, ["IDRID"])
    evaluated = {
        f"m{seed}": EvaluatedModel(
            f"results/models/A/base/seed{seed}/best.safetensors", "A", "single"
        )
        for seed in range(5)
    }
    assert list(qualitative_models({}, evaluated)) == [
        "A/base/seed0",
        "A/base/seed1",
        "A/base/seed2",
    ]
    chosen = {"report": {"qualitative": {"models": {"soup": "s.safetensors"}}}}
    assert qualitative_models(chosen, evaluated) == {"soup": "s.safetensors"}


def test_caption_values_quote_the_study() -> None:
    """What the captions quote: the headline metric's label, the bootstrap's confidence as a
    fraction and as a percentage, its resamples and alpha, the size curves' largest k."""
    from lesionsoup.plan.report import caption_values

    bootstrap = {"confidence": 0.9, "resamples": 100, "alpha": 0.01, "seed": 0}
    config = {
        "evaluation": {"bootstrap": bootstrap},
        "report": {"metric": "auroc", "size_curves": {"max_members": 5}},
    }
    assert caption_values(config) == {
        "metric_label": "AUROC",
        "confidence": 0.9,
        "percent": "90%",
        "resamples": 100,
        "alpha": 0.01,
        "max_members": 5,
    }
