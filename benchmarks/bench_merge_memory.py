"""Peak memory of averaging N checkpoints, as a multiple of one model's size.

Each measurement runs in a fresh subprocess; its peak resident set size
(``ru_maxrss``, which counts the pages of memory-mapped files too) minus its
resident size just before merging is the merge's own peak. Streaming
(``average_checkpoints``) should stay flat, near 3 models, whatever N; loading
every ingredient first grows with N and is shown for comparison.

    python benchmarks/bench_merge_memory.py [--size-mb 50] [--counts 2 8 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lesionsoup.core.checkpoint import load_state_dict, save_checkpoint
from lesionsoup.merging.averaging import average_checkpoints


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def model_state(size_mb: float, seed: int) -> dict[str, torch.Tensor]:
    """float32 tensors of U-Net-like shapes adding up to about ``size_mb`` MB, plus BN buffers."""
    generator = torch.Generator().manual_seed(seed)
    channels = 256
    per_layer = channels * channels * 9
    layers = max(1, round(size_mb * 1e6 / 4 / per_layer))
    state: dict[str, torch.Tensor] = {}
    for i in range(layers):
        state[f"block{i}.conv.weight"] = torch.randn(channels, channels, 3, 3, generator=generator)
        state[f"block{i}.bn.weight"] = torch.ones(channels)
        state[f"block{i}.bn.bias"] = torch.zeros(channels)
        state[f"block{i}.bn.running_mean"] = torch.randn(channels, generator=generator)
        state[f"block{i}.bn.running_var"] = torch.rand(channels, generator=generator)
        state[f"block{i}.bn.num_batches_tracked"] = torch.tensor(100 + seed)
    return state


def average_all_at_once(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The naive reference: every ingredient in memory, then averaged."""
    states = [load_state_dict(path) for path in paths]
    return {
        name: torch.stack([state[name].double() for state in states]).mean(0).to(tensor.dtype)
        if tensor.is_floating_point()
        else tensor
        for name, tensor in states[0].items()
    }


def child(method: str, paths: list[Path]) -> None:
    before = resident_bytes()
    merge = average_checkpoints if method == "streaming" else average_all_at_once
    merged = merge(paths)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model_bytes = sum(t.numel() * t.element_size() for t in merged.values())
    print(json.dumps({"before": before, "peak": peak, "model_bytes": model_bytes}))


def measure(method: str, paths: list[Path]) -> dict[str, int]:
    command = [sys.executable, __file__, "--child", method, *map(str, paths)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], [Path(p) for p in args.child[1:]])
        return
    with tempfile.TemporaryDirectory(prefix="bench_merge_") as directory:
        paths = []
        for i in range(max(args.counts)):
            paths.append(Path(directory) / f"ingredient{i:02d}.safetensors")
            save_checkpoint(
                paths[-1], model_state(args.size_mb, i), {"architecture": {}, "init_id": "bench"}
            )
        print(f"{'method':<14}{'N':>4}{'model MB':>10}{'peak extra MB':>15}{'x model':>9}")
        for method in ("streaming", "all-at-once"):
            for count in args.counts:
                row = measure(method, paths[:count])
                extra = row["peak"] - row["before"]
                print(
                    f"{method:<14}{count:>4}{row['model_bytes'] / 1e6:>10.1f}"
                    f"{extra / 1e6:>15.1f}{extra / row['model_bytes']:>9.2f}"
                )


if __name__ == "__main__":
    main()
