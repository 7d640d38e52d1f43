"""Profile the end-to-end write path (cut + Zarr + per-chip COG/JSON/JPG) with pyinstrument.

    .venv/bin/pip install pyinstrument && .venv/bin/python benchmarks/profile_writes.py

Prints where the time goes for 300 sparse chips of the cached full-tile benchmark scene
(see chip_throughput.py); the HTML profile is written to benchmarks/.cache/profile_writes.html.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chip_throughput import BANDS, CACHE, make_points, plan_frame, scene

from s2xr.chips import cut_chips
from s2xr.config import ChipSpec, GateConfig, StorageConfig
from s2xr.gate import gate_chips
from s2xr.scenes import stack_scenes
from s2xr.store import write_chips


def main() -> None:
    from pyinstrument import Profiler

    item, _ = scene(quick="--quick" in sys.argv)
    stack = stack_scenes([item], list(BANDS))
    pts = make_points(item, 300, False, np.random.default_rng(5))
    plan = plan_frame(item, pts, for_writing=True)
    ds = gate_chips(cut_chips(stack, plan, ChipSpec()), GateConfig(enabled=False))
    prof = Profiler(interval=0.002)
    with tempfile.TemporaryDirectory() as tmp:
        prof.start()
        write_chips(ds, plan, StorageConfig(root=Path(tmp)), GateConfig(enabled=False))
        prof.stop()
    print(prof.output_text(unicode=False, color=False, show_all=False)[:6000])
    (CACHE / "profile_writes.html").write_text(prof.output_html())


if __name__ == "__main__":
    main()
