"""AIS memory: peak RSS of `s2xr chip` on a ~213 MB AIS CSV (1.46 M rows) vs a small file.

    .venv/bin/python benchmarks/ais_memory.py                # 1.46 M rows (~213 MB CSV)
    .venv/bin/python benchmarks/ais_memory.py --quick        # 60,000 rows, a smaller world
    .venv/bin/python benchmarks/ais_memory.py --rows 500000 --keep /tmp/ais-bench

Everything happens in a temporary directory (``--keep DIR`` to look at it afterwards): the
embedded demo world is built once (as ``s2xr demo`` builds it), then a big AIS CSV is
generated deterministically (seed 7): the world's own synthetic AIS plus hundreds of extra
ships sailing in and around the world's window for ±1 h around each scene's sensing time (a
fix every 10 s), so the chip job finds scenes, positions and chips for some of them and
rejects the rest as "no item". ``s2xr chip`` runs in a child process, first on the world's
own AIS (the baseline) and then on the big file; the peak resident memory of the child's
process tree is sampled every 50 ms (psutil; the tree includes the local STAC server), and
the chip process's own high-water mark (``VmHWM`` in ``/proc/PID/status``) is exact. The
last line is JSON with both peaks, their ratio, the size of ``ops.sqlite`` and the chips.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2xr.config import DemoConfig  # noqa: E402
from s2xr.demo import build_world  # noqa: E402

MIDS = np.array([209, 210, 212, 215, 219, 224, 225, 229, 235, 236, 240, 241, 244, 245, 247,
                 248, 249, 255, 256, 257, 271, 273, 305, 308, 309, 311, 351, 352, 353, 354,
                 355, 356, 357, 370, 371, 372, 373, 412, 413, 414, 477, 538, 563, 564, 565,
                 566, 636, 710])
COLUMNS = ["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "ship_type", "length", "beam",
           "to_bow", "to_stern", "to_port", "to_starboard", "ship_name", "provider", "imo",
           "call_sign", "nav_status", "draft", "cargo", "transceiver_class"]
KNOT = 0.514444


def demo_section(quick: bool) -> dict:
    """The world: the demo's, or a smaller one for --quick."""
    cfg = DemoConfig()
    if quick:
        cfg = DemoConfig(window_px=1024, n_scenes=1, n_ships=12)
    return cfg.model_dump(mode="json")


def write_config(path: Path, demo: dict, block_size: int | None = None) -> None:
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg["demo"] = demo
    cfg["dask"] = {"scheduler": "threads"}
    if block_size:
        cfg["storage"]["block_size"] = block_size
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def big_ais(world_ais: Path, items: list[dict], rows: int, out: Path, seed: int = 7) -> int:
    """Write the world's AIS plus extra ships (≈ ``rows`` rows in all) to ``out`` → rows."""
    rng = np.random.default_rng(seed)
    base = pd.read_csv(world_ais)
    taken = set(base["mmsi"])
    times = sorted({pd.Timestamp(it["properties"]["datetime"]) for it in items})
    w, s, e, n = items[0]["bbox"]
    lat_c, lon_c = (s + n) / 2, (w + e) / 2
    half_lat, half_lon = 2.0 * (n - s), 2.0 * (e - w)  # 4 × the window each way
    step, span = 10.0, 3600.0
    per_scene = int(2 * span / step)
    n_extra = max(1, int(np.ceil((rows - len(base)) / (per_scene * len(times)))))
    pool = rng.choice(MIDS, 4 * n_extra) * 1_000_000 + rng.integers(0, 1_000_000, 4 * n_extra)
    mmsi = np.array([m for m in dict.fromkeys(pool.tolist()) if m not in taken][:n_extra])
    frames = []
    m_per_deg = 111_320.0
    for t0 in times:
        k = mmsi.size
        lat0 = lat_c + rng.uniform(-half_lat, half_lat, k)
        lon0 = lon_c + rng.uniform(-half_lon, half_lon, k)
        cog = rng.uniform(0, 360, k)
        sog = rng.uniform(3, 15, k)
        phase = rng.uniform(0, step, k)
        t = -span + phase[:, None] + step * np.arange(per_scene)[None, :]  # (ship, fix)
        d = (sog * KNOT)[:, None] * t
        rad = np.deg2rad(cog)[:, None]
        lat = lat0[:, None] + d * np.cos(rad) / m_per_deg
        lon = lon0[:, None] + d * np.sin(rad) / (m_per_deg * np.cos(np.deg2rad(lat_c)))
        stype = rng.choice([30, 37, 52, 60, 70, 80], k)
        length = rng.integers(12, 300, k)
        beam = np.maximum(3, length // 6)
        bow = length * 4 // 5
        port = beam // 2
        when = (np.datetime64(t0.tz_convert(None).to_datetime64(), "us")
                + (t * 1e6).astype("int64").astype("timedelta64[us]"))
        rep = np.repeat
        frames.append(pd.DataFrame({
            "mmsi": rep(mmsi, per_scene), "time": when.ravel(), "lat": lat.ravel().round(6),
            "lon": lon.ravel().round(6), "sog": rep(sog.round(1), per_scene),
            "cog": rep(cog.round(1), per_scene),
            "heading": rep(cog.round().astype(int) % 360, per_scene),
            "ship_type": rep(stype, per_scene), "length": rep(length, per_scene),
            "beam": rep(beam, per_scene), "to_bow": rep(bow, per_scene),
            "to_stern": rep(length - bow, per_scene), "to_port": rep(port, per_scene),
            "to_starboard": rep(beam - port, per_scene),
            "ship_name": rep(np.array([f"BENCH VESSEL {i:04d}" for i in range(k)]), per_scene),
            "provider": "synthetic", "imo": rep(9_000_000 + np.arange(k), per_scene),
            "call_sign": rep(np.array([f"C{i:06d}" for i in range(k)]), per_scene),
            "nav_status": 0, "draft": rep((length / 25).round(1), per_scene),
            "cargo": rep(stype, per_scene), "transceiver_class": "A"}))
    extra = pd.concat(frames, ignore_index=True)
    extra["time"] = np.char.add(np.datetime_as_string(extra["time"].to_numpy(), unit="us"), "Z")
    extra = extra.head(max(0, rows - len(base)))
    full = pd.concat([base.reindex(columns=COLUMNS), extra[COLUMNS]], ignore_index=True)
    for c in ("heading", "ship_type", "length", "beam", "to_bow", "to_stern", "to_port",
              "to_starboard", "imo", "nav_status", "cargo"):
        full[c] = full[c].round().astype("Int64")  # integers as integers ("126", not "126.0")
    full = full.sort_values(["time", "mmsi"], kind="stable")
    full.to_csv(out, index=False)
    return len(full)


def _hwm_mb(pid: int) -> float:
    """The kernel's high-water mark of a process's resident memory (VmHWM; Linux), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TreePeak:
    """Peak RSS (MB) of a process and its descendants, sampled every 50 ms, and the
    process's own high-water mark (VmHWM: exact, whatever happened between samples)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0.0
        self.peak_main = 0.0
        self.hwm = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                main = self.proc.memory_info().rss
                rss = main
                for c in self.proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += c.memory_info().rss
                self.peak = max(self.peak, rss / 2**20)
                self.peak_main = max(self.peak_main, main / 2**20)
                self.hwm = max(self.hwm, _hwm_mb(self.proc.pid))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def chip_run(config: Path, ais: Path, out: Path, world: Path) -> dict:
    """``s2xr chip`` in a child process → peak RSS, ops DB size, chips, wall time."""
    out.mkdir(parents=True)
    (out / "world").symlink_to(world, target_is_directory=True)  # reuse the built world
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "-q", "chip",
           "--config", str(config), "--ais", str(ais), "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    mon = TreePeak(proc.pid)
    stdout, stderr = proc.communicate()
    mon.stop()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"s2xr chip failed ({proc.returncode}):\n{stderr[-3000:]}")
    db = sum(p.stat().st_size for p in out.glob("ops.sqlite*"))
    idx = pd.read_parquet(out / "indexes" / "tiles.parquet")
    return {"peak_rss_mb": round(mon.peak, 1), "peak_rss_mb_main": round(mon.peak_main, 1),
            "hwm_mb": round(mon.hwm, 1),
            "ops_db_mb": round(db / 2**20, 2), "chips": len(idx),
            "passed": int(idx["qa_pass"].sum()), "wall_s": round(wall, 1), "stdout": stdout}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="60,000 rows and a smaller world")
    ap.add_argument("--rows", type=int, default=None, help="rows of the big file")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it")
    ap.add_argument("--block-size", type=int, default=None,
                    help="storage.block_size (chips computed and written per block; "
                         "default: the config's, 32)")
    args = ap.parse_args()
    rows = args.rows or (60_000 if args.quick else 1_460_000)
    tmp = tempfile.mkdtemp(prefix="s2xr-ais-mem-") if args.keep is None else args.keep
    work = Path(tmp)
    try:
        work.mkdir(parents=True, exist_ok=True)
        demo = demo_section(args.quick)
        world = build_world(work / "world", DemoConfig(**demo))
        config = work / "config.yaml"
        write_config(config, demo, args.block_size)
        big = work / "big_ais.csv"
        t = time.perf_counter()
        n = big_ais(world.ais_path, world.items(), rows, big)
        mb = big.stat().st_size / 2**20
        print(f"generated {big.name}: {n:,} rows, {mb:.0f} MB ({time.perf_counter() - t:.0f} s)",
              flush=True)
        runs = {}
        for name, path in (("small", world.ais_path), ("big", big)):
            for old in work.glob(f"out_{name}"):
                shutil.rmtree(old)
            r = chip_run(config, path, work / f"out_{name}", world.root)
            runs[name] = r
            print(f"  {name:<5} {path.name:<14} peak RSS {r['peak_rss_mb']:7.0f} MB (tree, "
                  f"sampled), {r['hwm_mb']:7.0f} MB (chip process, VmHWM); ops.sqlite "
                  f"{r['ops_db_mb']:7.2f} MB; {r['chips']} chips ({r['passed']} passed); "
                  f"{r['wall_s']:.0f} s", flush=True)
        small_rows = sum(1 for _ in world.ais_path.open()) - 1
        out = {"benchmark": "ais_memory", "quick": args.quick, "rows_big": n,
               "block_size": args.block_size or 32,
               "rows_small": small_rows, "csv_mb_big": round(mb, 1)}
        for name, r in runs.items():
            for k, v in r.items():
                if k != "stdout":
                    out[f"{k}_{name}"] = v
        out["ratio_big_over_small"] = round(runs["big"]["hwm_mb"] / runs["small"]["hwm_mb"], 2)
        print(json.dumps(out))
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
