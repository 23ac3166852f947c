"""Preprocessing IDRiD-sized photographs vs the floor of the same decode, crop, resize and write.

Two figures, side by side, each a ratio preprocess / floor taken per round
(rounds alternate the two, so load from other processes hits both alike):

* whole process, what a user waits for: 12 synthetic 4288 x 2848 JPEGs (textured
  discs) with four TIFF lesion masks each, in IDRiD's native tree and indexed
  by ``lesionsoup index``; ``lesionsoup preprocess`` run as the workflow's rule
  runs it (``--threads 1``), start-up included, against
  ``benchmarks/preprocess_floor.py`` run as a process of its own (cv2 and
  numpy only, one thread: decode, crop to the box the cache used, one resize,
  ``np.save``; with the malloc thresholds ``core.allocator`` gives the command,
  as environment variables, so that it is no slower for lacking them);
  wall-clock and CPU (user + system) seconds;
* in-process, the work alone, CPU seconds of this process on one photograph:

  * photo floor: decode the JPEG, crop it to the field of view's box, one
    INTER_AREA resize to the cached size, ``np.save`` (masks excluded, so no
    preprocessing can reach 1.3x of it);
  * floor: the photo floor plus what any preprocessing of these inputs must
    also do: decode the four masks with the same reader, crop them to the same
    box, one INTER_AREA resize of the four stacked, and save one label plane;
    the same decoders, crop, interpolation and sizes as ``preprocess_image``;
  * preprocess: ``preprocess_image`` + ``CacheWriter.write`` (everything above
    plus field-of-view detection, binarisation, lesion preservation, label
    packing, padding, lesion locations and the record).

Run: ``python benchmarks/bench_preprocess.py [--size 1536] [--images 12]
[--process-repeats 5] [--repeats 9] [--cv-threads 1]`` (``--cv-threads 1`` is
what ``build_cache`` uses in each process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lesionsoup.core.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, reuse_freed_memory
from lesionsoup.core.lesions import Lesion
from lesionsoup.data.cache import CacheWriter
from lesionsoup.data.datasets import get_adapter, idrid
from lesionsoup.data.mask_resize import MASK_RESIZE_RULES
from lesionsoup.data.preprocess import MaskRules, preprocess_image, read_mask, read_photograph

HEIGHT, WIDTH = 2848, 4288
LESIONS = ("EX", "HE", "MA", "CWS")
FLOOR_SCRIPT = Path(__file__).with_name("preprocess_floor.py")
KINDS = ("wall", "cpu")
#: ``core.allocator``'s setting, for the floor script (glibc reads these at start).
FLOOR_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
}


def make_photograph(seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A textured disc (BGR uint8) and its four 0/255 lesion masks, by lesion name."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    distance = np.hypot(yy - HEIGHT / 2, xx - WIDTH / 2 - 60) / 1450
    texture = cv2.resize(rng.normal(0, 15, (90, 135, 3)).astype(np.float32), (WIDTH, HEIGHT))
    image = (np.array([40, 90, 180], np.float32) + texture) * (1 - 0.5 * distance[..., None] ** 2)
    image[distance >= 1] = 0
    masks = {}
    for index, lesion in enumerate(LESIONS):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        for _ in range((200, 40, 150, 10)[index]):
            y, x = rng.integers(600, HEIGHT - 600), rng.integers(900, WIDTH - 900)
            radius = int(rng.integers((2, 10, 1, 30)[index], (25, 60, 6, 90)[index]))
            cv2.circle(mask, (int(x), int(y)), radius, 255, -1)
        masks[lesion] = mask
    return np.clip(image, 0, 255).astype(np.uint8), masks


def make_inputs(folder: Path, seed: int = 0) -> dict:
    """One photograph and its masks in ``folder``, and its manifest row."""
    image, masks = make_photograph(seed)
    image_path = folder / "photo.jpg"
    cv2.imwrite(str(image_path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    row = {"image_id": "photo", "split": "train", "image_path": str(image_path)}
    row |= {"width": WIDTH, "height": HEIGHT}
    for lesion, mask in masks.items():
        path = folder / f"photo_{lesion}.tif"
        cv2.imwrite(str(path), mask)
        row[f"mask_{lesion}"] = str(path)
    return row


def interleaved(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """CPU seconds (this process; fairer on a shared machine) of each function per round."""
    for function in functions.values():
        function()  # warm caches
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            cpu = time.process_time()
            function()
            samples[name].append(time.process_time() - cpu)
    return samples


def floors(row: dict, size: int, folder: Path) -> dict[str, Callable[[], None]]:
    """The photo floor and the floor (module docstring), on ``preprocess_image``'s geometry."""
    geometry = preprocess_image(row, size, MaskRules()).geometry
    y0, x0, y1, x1 = geometry.crop_y0, geometry.crop_x0, geometry.crop_y1, geometry.crop_x1
    out = (geometry.resized_w, geometry.resized_h)

    def photo() -> None:
        image = read_photograph(row["image_path"])[y0:y1, x0:x1]
        np.save(folder / "floor_image.npy", cv2.resize(image, out, interpolation=cv2.INTER_AREA))

    def floor() -> None:
        photo()
        stacked = np.empty((y1 - y0, x1 - x0, len(LESIONS)), np.uint8)  # fastest stacking tried
        for channel, lesion in enumerate(LESIONS):
            stacked[..., channel] = read_mask(row[f"mask_{lesion}"])[y0:y1, x0:x1]
        small = cv2.resize(stacked, out, interpolation=cv2.INTER_AREA)
        np.save(folder / "floor_labels.npy", small[..., 0])

    return {"photo floor": photo, "floor": floor}


def write_idrid_tree(root: Path, count: int) -> Path:
    """``count`` photographs with four TIFF masks each in IDRiD's native layout (training set)."""
    segmentation = root / idrid.ROOT_FOLDER
    images = segmentation / idrid.IMAGES_FOLDER / idrid.SPLIT_FOLDERS["train"]
    truth = segmentation / idrid.MASKS_FOLDER / idrid.SPLIT_FOLDERS["train"]
    for top in (idrid.IMAGES_FOLDER, idrid.MASKS_FOLDER):  # the test set is left empty
        for split_folder in idrid.SPLIT_FOLDERS.values():
            (segmentation / top / split_folder).mkdir(parents=True)
    for seed in range(count):
        name = f"IDRiD_{seed + 1:02d}"
        image, masks = make_photograph(seed)
        cv2.imwrite(str(images / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        for lesion, mask in masks.items():
            folder, suffix = idrid.LESION_FOLDERS[Lesion(lesion)]
            (truth / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(truth / folder / f"{name}{suffix}.tif"), mask)
    return root


def preprocess_command(manifest: Path, cache: Path, size: int) -> list[str]:
    """``lesionsoup preprocess`` with the arguments the workflow's rule passes for IDRID."""
    adapter = get_adapter("IDRID")
    uncertain = "none" if adapter.uncertain_value is None else str(adapter.uncertain_value)
    return [
        *("lesionsoup", "preprocess", str(manifest), "-o", str(cache), "--size", str(size)),
        *("--mask-threshold", str(adapter.mask_threshold), "--uncertain-value", uncertain),
        *("--uncertain-as", adapter.uncertain_as, "--mask-resize", MASK_RESIZE_RULES[0]),
        *("--lesion-rules", json.dumps(dict(adapter.lesion_rules), sort_keys=True)),
        *("--on-bad-image", "fail", "--threads", "1"),
    ]


def floor_plan(cache: Path) -> list[dict]:
    """What the floor script does per image: the files, and the crop and size the cache used."""
    manifest = pd.read_csv(cache / "manifest.csv").set_index("image_id")
    plan = []
    for record in pd.read_csv(cache / "index.csv").to_dict("records"):
        row = manifest.loc[record["image_id"]]
        plan.append(
            {
                "id": record["image_id"],
                "image": row["image_path"],
                "masks": [row[f"mask_{lesion}"] for lesion in LESIONS],
                "crop": [int(record[f"crop_{name}"]) for name in ("y0", "x0", "y1", "x1")],
                "size": [int(record["resized_w"]), int(record["resized_h"])],
            }
        )
    return plan


def timed_process(
    command: list[str], output: Path, environment: dict[str, str]
) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process; ``output`` removed after."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **environment})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(output)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def whole_process(folder: Path, count: int, size: int, repeats: int) -> dict[str, list[float]]:
    """Wall and CPU seconds of ``lesionsoup preprocess`` and the floor script, in turn."""
    root = write_idrid_tree(folder / "trees", count)
    manifest = folder / "manifest.csv"
    subprocess.run(["lesionsoup", "index", "IDRID", str(root), "-o", str(manifest)], check=True)
    cache, floor_out = folder / "cache", folder / "floor"
    subprocess.run(preprocess_command(manifest, cache, size), check=True, capture_output=True)
    shutil.copy(manifest, cache / "manifest.csv")
    plan = folder / "plan.json"
    plan.write_text(json.dumps(floor_plan(cache)))
    shutil.rmtree(cache)
    floor = [sys.executable, str(FLOOR_SCRIPT), str(plan), str(floor_out)]
    commands = {
        "lesionsoup preprocess": (preprocess_command(manifest, cache, size), cache, {}),
        "floor script": (floor, floor_out, FLOOR_MALLOC),
    }
    samples: dict[str, list[float]] = {f"{name} {kind}": [] for name in commands for kind in KINDS}
    for _ in range(repeats):
        for name, (command, output, environment) in commands.items():
            timed = timed_process(command, output, environment)
            for kind, seconds in zip(KINDS, timed, strict=True):
                samples[f"{name} {kind}"].append(seconds)
    return samples


def _median_range(values: list[float], scale: float, unit: str) -> str:
    low, high = scale * min(values), scale * max(values)
    return f"{scale * statistics.median(values):8.2f} {unit}  ({low:.2f} - {high:.2f})"


def _ratio(numerators: list[float], denominators: list[float]) -> str:
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f} - {max(ratios):.2f})"


def _report(whole: dict[str, list[float]], inner: dict[str, list[float]], count: int) -> None:
    print(f"whole process, {count} images, start-up included (median, range):")
    for name, values in whole.items():
        print(f"  {name:30s} {_median_range(values, 1, 's')}")
    print("in-process, one image, CPU time (median, range):")
    for name, values in inner.items():
        print(f"  {name:30s} {_median_range(values, 1000, 'ms')}")
    print("preprocess / floor per round, median (range):")
    print(f"  {'':6s} {'whole process':>20s}   {'in-process':>20s}")
    for kind in KINDS:
        whole_ratio = _ratio(whole[f"lesionsoup preprocess {kind}"], whole[f"floor script {kind}"])
        inner_ratio = _ratio(inner["preprocess + write"], inner["floor"]) if kind == "cpu" else ""
        print(f"  {kind:6s} {whole_ratio:>20s}   {inner_ratio:>20s}")
    photo = _ratio(inner["preprocess + write"], inner["photo floor"])
    print(f"  in-process preprocess / photo floor (cpu): {photo}")
    print("  (target: whole process <= 1.3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--images", type=int, default=12, help="photographs, whole process")
    parser.add_argument("--repeats", type=int, default=9, help="in-process rounds")
    parser.add_argument("--process-repeats", type=int, default=5, help="whole-process rounds")
    parser.add_argument("--cv-threads", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(args.cv_threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        whole = whole_process(folder, args.images, args.size, args.process_repeats)
        row = make_inputs(folder)
        reuse_freed_memory()  # as build_cache does
        writer = CacheWriter(folder / "inner_cache", {"size": args.size})
        rules = MaskRules()

        def preprocess() -> None:
            writer.write(preprocess_image(row, args.size, rules))

        inner = interleaved(
            {**floors(row, args.size, folder), "preprocess + write": preprocess}, args.repeats
        )

    print(f"{WIDTH}x{HEIGHT} JPEG + 4 TIFF masks -> {args.size}, cv2 threads {args.cv_threads}")
    _report(whole, inner, args.images)


if __name__ == "__main__":
    main()
