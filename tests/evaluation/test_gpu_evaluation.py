"""Evaluation and prediction on CUDA; skipped (reported as not run) where no GPU is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_toy_cache
from support.predict import read_png, rendered, save_random_model, write_photograph
from test_evaluate import _hard_image

from lesionsoup.core.device_histograms import bin_image
from lesionsoup.core.lesions import TRAINED
from lesionsoup.core.metrics import DEFAULT_BINS, SegmentationHistograms
from lesionsoup.deploy.predict import PredictOptions, predict_photographs
from lesionsoup.evaluation.evaluate import evaluate, evaluation_metrics, load_evaluation
from lesionsoup.evaluation.per_model import EvaluationTarget, evaluate_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available"),
]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gpu")
    splits = {"train": 1, "test": 3}
    return {
        "model": save_random_model(folder / "model.safetensors"),
        "AAA": write_toy_cache(folder / "AAA", "AAA", splits=splits, seed=1),
        "BBB": write_toy_cache(folder / "BBB", "BBB", splits=splits, seed=2),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_binning_equals_the_numpy_binning_bit_for_bit(dtype):
    for seed in range(3):
        probs, labels = _hard_image(seed, DEFAULT_BINS, dtype)
        expected = SegmentationHistograms(TRAINED)
        expected.add_image("img", probs.float().numpy(), labels)
        negatives, positives = bin_image("img", probs.cuda(), labels, TRAINED, DEFAULT_BINS)
        for index, lesion in enumerate(TRAINED):
            assert np.array_equal(positives[index], expected[lesion].positives)
            assert np.array_equal(negatives[index], expected[lesion].negatives)
    bad = torch.full((len(TRAINED), *labels.shape), 1.5, device="cuda")
    labels[:] = 64  # every pixel in the field of view
    with pytest.raises(ValueError, match="probabilities of valid pixels must lie in"):
        bin_image("img", bad, labels, TRAINED, DEFAULT_BINS)


def test_evaluation_on_cuda_counts_the_pixels_the_cpu_counts(study):
    on_cpu = evaluate(study["model"], study["AAA"], device="cpu")
    on_gpu = evaluate(study["model"], study["AAA"], device="cuda")
    assert on_gpu["device"].startswith("cuda") and on_cpu["device"] == "cpu"
    cpu_metrics, gpu_metrics = evaluation_metrics(on_cpu), evaluation_metrics(on_gpu)
    for lesion in cpu_metrics:
        for name in ("valid_pixels", "positive_pixels", "images_with_lesion"):
            assert gpu_metrics[lesion][name] == cpu_metrics[lesion][name]
        # bf16 on the GPU moves probabilities by about 1%; the ranking barely changes
        assert gpu_metrics[lesion]["auroc"] == pytest.approx(cpu_metrics[lesion]["auroc"], abs=0.02)
    histograms = SegmentationHistograms.from_dict(on_gpu["histograms"])
    assert sum(histograms[lesion].valid_pixels for lesion in histograms.lesions) > 0
    # lesion-wise counts from the booleans the GPU sends back: the reference lesions are
    # the CPU's; the predicted ones may differ where bf16 moves p across 0.5
    on_host = SegmentationHistograms.from_dict(on_cpu["histograms"])
    for lesion in histograms.lesions:
        gpu_counts, cpu_counts = histograms[lesion].components, on_host[lesion].components
        assert np.array_equal(gpu_counts[:, 0], cpu_counts[:, 0])


def test_one_cuda_job_evaluates_every_test_set_and_reuses_them(study, tmp_path):
    tests = [EvaluationTarget(study[n], tmp_path / f"{n}.json") for n in ("AAA", "BBB")]
    store = tmp_path / "store"
    assert evaluate_model(study["model"], tests, store=store, device="cuda") == [False, False]
    assert evaluate_model(study["model"], tests, store=store, device="cuda") == [True, True]
    for test in tests:
        assert load_evaluation(test.output)["device"].startswith("cuda")


def test_predict_on_cuda_agrees_with_the_cpu(tmp_path):
    model = save_random_model(tmp_path / "model.safetensors")
    for seed, shape in enumerate([(301, 417), (257, 211)]):
        write_photograph(tmp_path / "in" / f"p{seed}.jpg", rendered(seed, *shape).image)
    options = PredictOptions(size=96, progress=False)
    for device in ("cpu", "cuda"):
        report = predict_photographs(model, [tmp_path / "in"], tmp_path / device, options, device)
        assert report.predicted == 2 and not report.failures
    for seed in range(2):
        for lesion in ("EX", "HE", "MA", "CWS"):
            name = f"p{seed}/{lesion}_probability.png"
            cpu = read_png(tmp_path / "cpu" / name).astype(int)
            gpu = read_png(tmp_path / "cuda" / name).astype(int)
            assert cpu.shape == gpu.shape
            assert np.abs(cpu - gpu).max() <= 8  # of 255: bf16 against fp32
            assert (np.abs(cpu - gpu) <= 2).mean() > 0.99
