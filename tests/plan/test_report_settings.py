"""Defaults of the config's report section."""

from __future__ import annotations

import pytest

from lesionsoup.plan.report import DEFAULTS, report_settings


def test_absent_section_gives_the_defaults() -> None:
    assert report_settings({}) == DEFAULTS


def test_nested_values_override_only_what_they_name() -> None:
    settings = report_settings({"report": {"metric": "auroc", "connectivity": {"points": 5}}})
    assert settings["metric"] == "auroc"
    assert settings["connectivity"]["points"] == 5
    assert settings["connectivity"]["bn_policies"] == ["average", "recompute"]
    assert settings["qualitative"] == DEFAULTS["qualitative"]


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
