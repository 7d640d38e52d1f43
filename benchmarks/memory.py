"""Memory: stream 20,000 chips to the Zarr cube and record peak RSS at 1k, 5k and 20k.

    .venv/bin/python benchmarks/memory.py            # 20,000 chips (full-tile scene)
    .venv/bin/python benchmarks/memory.py --quick    # 600 chips, checkpoints 100/300/600

Chips are cut from random water points of the cached 10980² benchmark scene (see
chip_throughput.py) and written with ``write_chips`` (Zarr cube + index; no per-chip COG or
quicklook, so the cube path is what is measured). The last line is JSON with
``peak_rss_mb_1k``, ``peak_rss_mb_5k``, ``peak_rss_mb_20k``, ``growth_5k_to_20k``, the
decoded COG blocks cached at each mark (``block_cache_mb_*``: the reader's LRU cache, capped
at 256 MB, fills as the sparse chips touch more of the tile) and the growth without them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chip_throughput import BANDS, PeakRSS, make_points, plan_frame, scene

from s2xr.chips import cut_chips
from s2xr.config import ChipSpec, GateConfig, StorageConfig
from s2xr.gate import gate_chips
from s2xr.scenes import stack_scenes
from s2xr.scenes.reader import BLOCKS
from s2xr.store import open_chips, write_chips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    checkpoints = [100, 300, 600] if args.quick else [1000, 5000, 20000]
    n = checkpoints[-1]
    item, _ = scene(args.quick)
    stack = stack_scenes([item], list(BANDS))
    pts = make_points(item, n, False, np.random.default_rng(3))
    plan = plan_frame(item, pts, for_writing=True)
    ds = gate_chips(cut_chips(stack, plan, ChipSpec()), GateConfig(enabled=False))
    done = [0]
    marks: dict[int, float] = {}
    cache: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp, PeakRSS() as mem:
        cfg = StorageConfig(root=Path(tmp), write_geotiff=False, write_quicklook=False)
        t = time.perf_counter()

        def progress(k: int) -> None:
            done[0] += k
            for c in checkpoints:
                if c not in marks and done[0] >= c:
                    marks[c] = mem.peak
                    cache[c] = BLOCKS.nbytes / 2**20
                    print(f"  {c:6d} chips: peak RSS {mem.peak:7.0f} MB, of it decoded COG "
                          f"blocks cached {cache[c]:4.0f} MB (cap "
                          f"{BLOCKS.max_bytes / 2**20:.0f}) "
                          f"({done[0] / (time.perf_counter() - t):.0f} chips/s)", flush=True)

        write_chips(ds, plan, cfg, GateConfig(enabled=False), progress=progress)
        n_cube = open_chips(Path(tmp)).sizes["chip"]
    assert n_cube == n, (n_cube, n)
    keys = ["1k", "5k", "20k"]
    out = {f"peak_rss_mb_{k}": marks[c] for k, c in zip(keys, checkpoints, strict=True)}
    out["growth_5k_to_20k"] = marks[checkpoints[2]] / marks[checkpoints[1]] - 1
    out.update({f"block_cache_mb_{k}": cache[c] for k, c in zip(keys, checkpoints, strict=True)})
    # the growth without the block cache filling up to its cap (bounded, not a leak)
    rest = [marks[c] - cache[c] for c in checkpoints]
    out["growth_5k_to_20k_without_block_cache"] = rest[2] / rest[1] - 1
    print(json.dumps({"benchmark": "memory", "chips": n, "quick": args.quick, **out}))


if __name__ == "__main__":
    main()
