"""Chip throughput: s2xr's cut against baselines, on a full 10980² embedded-world scene.

    .venv/bin/python benchmarks/chip_throughput.py            # full run (≈15 min, 2 cores)
    .venv/bin/python benchmarks/chip_throughput.py --quick    # < 1 min, a 2048² window

Methods, all producing the product's default chips in memory (float32 reflectance of
B02 B03 B04 B08 + B11 B12 resampled to 10 m, scale/offset applied, and SCL), checked equal:

  (a) predecessor — open each asset per chip, read a window, close
  (b) best naive  — datasets opened once, windowed reads, one thread
  (c) work floor  — every COG block the chips touch decoded exactly once, chips assembled
                    from the decoded blocks, one thread
  (d) s2xr        — ``cut_chips`` computed on the default (threads) scheduler
  (e) s2xr        — the same on a 2-worker LocalCluster (processes)

Points are sparse (uniform over water) or dense (a port cluster, ~500 m spread). Prints a
table, writes a plot of time vs N to docs/img/, and ends with one JSON line (medians at
N = 1000; with --quick at the largest N).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import rasterio
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from s2xr.chips import cut_chips
from s2xr.config import ChipSpec, DemoConfig
from s2xr.demo import build_world
from s2xr.scenes import dedupe_items, stack_scenes
from s2xr.scenes.items import reflectance_params
from s2xr.scenes.reader import reset_dataset_cache
from s2xr.scenes.windows import apply_window, plan_window

CACHE = Path(__file__).resolve().parent / ".cache"
BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")


class PeakRSS:
    """Peak resident memory of this process tree while the block runs (MB)."""

    def __enter__(self) -> PeakRSS:
        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _sample(self) -> float:
        p = psutil.Process()
        rss = p.memory_info().rss
        for c in p.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                rss += c.memory_info().rss
        return rss / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._sample())


def scene(quick: bool) -> tuple[dict, Path]:
    cfg = DemoConfig(window_px=2048 if quick else 10980, n_scenes=1, n_ships=40 if quick else 200,
                     seed=8)
    world = build_world(CACHE / f"world-{cfg.window_px}", cfg)
    return dedupe_items(world.items())[0], world.root


def make_points(item: dict, n: int, dense: bool, rng: np.random.Generator) -> pd.DataFrame:
    """Chip top-left corners (x_left, y_top) fully inside the scene, over water."""
    blue = item["assets"]["blue"]
    t = blue["proj:transform"]
    h, w = blue["proj:shape"]
    with rasterio.open(item["assets"]["scl"]["href"]) as src:
        f = max(1, src.width // 1024)
        scl = src.read(1, out_shape=(src.height // f, src.width // f))
    water = np.argwhere(scl == 6) * (2 * f)  # 10 m pixel of each water cell
    water = water[(water[:, 0] > 128) & (water[:, 0] < h - 128) & (water[:, 1] > 128) &
                  (water[:, 1] < w - 128)]
    if dense:
        centre = water[rng.integers(len(water))]
        rc = np.round(centre + rng.normal(0, 50, (n, 2))).astype(int)  # 500 m spread
        rc = np.clip(rc, 128, [h - 129, w - 129])
    else:
        rc = water[rng.integers(0, len(water), n)]
    rows, cols = rc[:, 0] - 128, rc[:, 1] - 128
    # the order plan_chips gives the product: by 512-px block, so that batches running on
    # different threads touch different COG blocks (every method gets the same order)
    order = np.lexsort((cols, rows, cols // 512, rows // 512))
    rows, cols = rows[order], cols[order]
    return pd.DataFrame({"x_left": t[2] + cols * 10.0, "y_top": t[5] - rows * 10.0})


def records(item: dict, pts: pd.DataFrame) -> list[tuple]:
    hrefs = tuple(item["assets"][b]["href"] for b in BANDS)
    so = [reflectance_params(item, b) for b in BANDS]
    scales, offsets = tuple(s for s, _ in so), tuple(o for _, o in so)
    return [(hrefs, scales, offsets, item["assets"]["scl"]["href"], x, y)
            for x, y in zip(pts.x_left, pts.y_top, strict=True)]


def to_chips(dn: np.ndarray, scale: float, offset: float) -> np.ndarray:
    refl = dn.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if dn.dtype.kind in "ui":
        refl[dn == 0] = np.nan
    return refl


def method_a(recs: list[tuple]) -> np.ndarray:
    """Predecessor: open every asset for every chip."""
    refl = np.empty((len(recs), len(BANDS), 256, 256), np.float32)
    scl_out = np.empty((len(recs), 256, 256), np.uint8)
    for k, (hrefs, scales, offsets, scl, x, y) in enumerate(recs):
        for b, href in enumerate((*hrefs, scl)):
            with rasterio.open(href) as src:
                plan = plan_window(src.transform, (src.height, src.width), x, y, 256, 10.0,
                                   nearest=(b >= len(hrefs) or src.transform.a == 10.0))
                data = src.read(1, window=Window.from_slices(plan.rows, plan.cols))
            dn = apply_window(data, plan)
            if b == len(hrefs):
                scl_out[k] = dn
            else:
                refl[k, b] = to_chips(dn, scales[b], offsets[b])
    return refl, scl_out


def method_b(recs: list[tuple]) -> tuple:
    """Best naive: datasets opened once, GDAL windowed reads, NumPy resampling, one thread."""
    hrefs = (*recs[0][0], recs[0][3])
    handles = {h: rasterio.open(h) for h in hrefs}
    refl = np.empty((len(recs), len(BANDS), 256, 256), np.float32)
    scl_out = np.empty((len(recs), 256, 256), np.uint8)
    try:
        for k, (_, scales, offsets, _, x, y) in enumerate(recs):
            for b, href in enumerate(hrefs):
                src = handles[href]
                plan = plan_window(src.transform, (src.height, src.width), x, y, 256, 10.0,
                                   nearest=(b >= len(BANDS) or src.transform.a == 10.0))
                dn = apply_window(src.read(1, window=Window.from_slices(plan.rows, plan.cols)),
                                  plan)
                if b == len(BANDS):
                    scl_out[k] = dn
                else:
                    refl[k, b] = to_chips(dn, scales[b], offsets[b])
    finally:
        for h in handles.values():
            h.close()
    return refl, scl_out


def method_c(recs: list[tuple]) -> np.ndarray:
    """Work floor: decode every touched block once, then assemble chips from blocks."""
    hrefs = (*recs[0][0], recs[0][3])
    refl = np.empty((len(recs), len(BANDS), 256, 256), np.float32)
    scl_out = np.empty((len(recs), 256, 256), np.uint8)
    for b, href in enumerate(hrefs):
        with rasterio.open(href) as src:
            bs = src.block_shapes[0][0]
            plans = [plan_window(src.transform, (src.height, src.width), r[4], r[5], 256, 10.0,
                                 nearest=(b >= len(BANDS) or src.transform.a == 10.0))
                     for r in recs]
            need = {(i, j) for p in plans
                    for i in range(p.rows[0] // bs, (p.rows[1] - 1) // bs + 1)
                    for j in range(p.cols[0] // bs, (p.cols[1] - 1) // bs + 1)}
            blocks = {(i, j): src.read(1, window=Window(j * bs, i * bs,
                                                        min(bs, src.width - j * bs),
                                                        min(bs, src.height - i * bs)))
                      for i, j in need}
            for k, p in enumerate(plans):
                (r0, r1), (c0, c1) = p.rows, p.cols
                win = np.empty((r1 - r0, c1 - c0), src.dtypes[0])
                for i in range(r0 // bs, (r1 - 1) // bs + 1):
                    for j in range(c0 // bs, (c1 - 1) // bs + 1):
                        blk = blocks[(i, j)]
                        ya, yb = max(r0, i * bs), min(r1, i * bs + blk.shape[0])
                        xa, xb = max(c0, j * bs), min(c1, j * bs + blk.shape[1])
                        win[ya - r0:yb - r0, xa - c0:xb - c0] = blk[ya - i * bs:yb - i * bs,
                                                                    xa - j * bs:xb - j * bs]
                dn = apply_window(win, p)
                if b == len(BANDS):
                    scl_out[k] = dn
                else:
                    refl[k, b] = to_chips(dn, recs[k][1][b], recs[k][2][b])
    return refl, scl_out


def plan_frame(item: dict, pts: pd.DataFrame, *, for_writing: bool = False) -> pd.DataFrame:
    """A chip plan for the points (what cut_chips needs; with ``for_writing`` also the
    columns write_chips records)."""
    n = len(pts)
    plan = pd.DataFrame({"chip_id": [f"{i:016x}" for i in range(n)], "mmsi": 224000000,
                         "item_id": item["id"], "tile_id": "30STE",
                         "epsg": item["properties"]["proj:epsg"],
                         "scene_datetime": pd.Timestamp(item["properties"]["datetime"]),
                         "lon": 0.0, "lat": 0.0, "x_left": pts.x_left.to_numpy(),
                         "y_top": pts.y_top.to_numpy(), "size": 256, "res": 10.0})
    if for_writing:
        for col, v in (("split", "train"), ("row0", 0), ("col0", 0), ("dt_seconds", 0.0),
                       ("ais_time", plan["scene_datetime"]),
                       ("method", "exact"), ("uncertainty_m", 10.0), ("cloud_cover", 5.0),
                       ("processing_baseline", "05.11"), ("collection", "sentinel-2-l2a")):
            plan[col] = v
    return plan


def method_d(stack, item: dict, pts: pd.DataFrame, scheduler: str = "threads") -> tuple:
    """s2xr's lazy cut, each block stored straight into the in-memory result (da.store)."""
    reset_dataset_cache()
    ds = cut_chips(stack, plan_frame(item, pts), ChipSpec())
    graph = len(ds.reflectance.data.__dask_graph__())
    import dask
    import dask.array as da

    refl = np.empty((len(pts), len(BANDS), 256, 256), np.float32)
    scl = np.empty((len(pts), 256, 256), np.uint8)
    with dask.config.set(scheduler=scheduler):
        da.store([ds.reflectance.data, ds.scl.data], [refl, scl], lock=False)
    return (refl, scl), graph


def method_e(client, stack, item: dict, pts: pd.DataFrame) -> tuple:
    """s2xr's cut on a LocalCluster; blocks are gathered into the client's arrays one by one
    (a single concatenating task would hold every chip in one worker)."""
    from distributed import as_completed

    client.run(reset_dataset_cache)
    ds = cut_chips(stack, plan_frame(item, pts), ChipSpec())
    graph = len(ds.reflectance.data.__dask_graph__())
    refl = np.empty((len(pts), len(BANDS), 256, 256), np.float32)
    scl = np.empty((len(pts), 256, 256), np.uint8)
    starts = np.cumsum((0, *ds.reflectance.data.chunks[0]))
    parts = [(refl, k, b) for k, b in enumerate(ds.reflectance.data.to_delayed().ravel())]
    parts += [(scl, k, b) for k, b in enumerate(ds.scl.data.to_delayed().ravel())]
    futures = client.compute([b for _, _, b in parts])
    where = {f.key: (target, k) for f, (target, k, _) in zip(futures, parts, strict=True)}
    for fut, block in as_completed(futures, with_results=True):
        target, k = where[fut.key]
        target[starts[k]:starts[k + 1]] = block
        fut.release()
    return (refl, scl), graph


def digest(result: tuple) -> str:
    """A fingerprint of (reflectance, scl), NaN-normalised, computed in slices so that big
    results are compared without keeping two of them in memory."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    refl, scl = result
    for s in range(0, len(refl), 64):
        h.update(np.nan_to_num(refl[s:s + 64], nan=-9999.0).tobytes())
        h.update(np.ascontiguousarray(scl[s:s + 64]).tobytes())
    return h.hexdigest()


def timed(fn, *args):
    with PeakRSS() as mem:
        t = time.perf_counter()
        res = fn(*args)
        dt = time.perf_counter() - t
    return res, dt, mem.peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small scene and N: < 1 minute")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--sizes", default=None, help="comma-separated N values")
    ap.add_argument("--no-cluster", action="store_true", help="skip (e)")
    ap.add_argument("--plot", default=None, help="PNG path for time vs N")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [10, 100] if args.quick else [10, 100, 1000, 5000])
    repeats = args.repeats or (1 if args.quick else 3)
    item, _ = scene(args.quick)
    stack = stack_scenes([item], list(BANDS))
    rng = np.random.default_rng(42)
    client = None
    if not args.no_cluster:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", host="127.0.0.1")
        client = Client(cluster, set_as_default=False)
    rows = []
    for layout in ("sparse", "dense"):
        for n in sizes:
            pts = make_points(item, n, layout == "dense", rng)
            recs = records(item, pts)
            times: dict[str, list[float]] = {m: [] for m in "abcde"}
            peaks: dict[str, float] = {}
            graph = 0
            for _ in range(repeats):
                ref = None
                for m in "bacde":
                    if m == "a" and n > 1000:
                        continue  # the predecessor's method: minutes per run beyond 1000
                    if m == "e" and client is None:
                        continue
                    if m == "a":
                        res, dt, peak = timed(method_a, recs)
                    elif m == "b":
                        res, dt, peak = timed(method_b, recs)
                    elif m == "c":
                        res, dt, peak = timed(method_c, recs)
                    elif m == "d":
                        (res, graph), dt, peak = timed(method_d, stack, item, pts)
                    else:
                        with client.as_current():
                            (res, _), dt, peak = timed(method_e, client, stack, item, pts)
                    fp = digest(res)
                    del res
                    if ref is None:
                        ref = fp
                    elif fp != ref:
                        raise SystemExit(f"method {m} differs from (b) at N={n} {layout}")
                    times[m].append(dt)
                    peaks[m] = peak
            med = {m: (statistics.median(v) if v else np.nan)
                   for m, v in times.items()}
            rows.append({"layout": layout, "n": n, "graph_tasks_d": graph,
                         **{f"s_{m}": med[m] for m in "abcde"},
                         **{f"chips_per_s_{m}": n / med[m] if med[m] else np.nan
                            for m in "abcde"},
                         **{f"peak_rss_mb_{m}": peaks.get(m, np.nan) for m in "abcde"}})
            r = rows[-1]
            print(f"{layout:6} N={n:5}  " + "  ".join(
                f"{m}:{r[f'chips_per_s_{m}']:7.1f}/s" for m in "abcde"), flush=True)
    if client is not None:
        client.close()
        cluster.close()
    df = pd.DataFrame(rows)
    ref_n = 1000 if 1000 in sizes else max(sizes)

    def ratio(num: str, den: str, layout: str) -> float:
        r = df[(df.layout == layout) & (df.n == ref_n)].iloc[0]
        return float(r[f"s_{den}"] / r[f"s_{num}"])

    print("\nchips/s (median of", repeats, "runs), ratios at N =", ref_n)
    print(df[["layout", "n"] + [f"chips_per_s_{m}" for m in "abcde"] + ["graph_tasks_d"]]
          .round(1).to_string(index=False))
    summary = {
        "benchmark": "chip_throughput", "quick": args.quick, "n_ref": ref_n,
        "d_over_a_sparse": ratio("d", "a", "sparse"), "d_over_a_dense": ratio("d", "a", "dense"),
        "d_over_b_sparse": ratio("d", "b", "sparse"), "d_over_b_dense": ratio("d", "b", "dense"),
        "d_over_c_sparse": ratio("d", "c", "sparse"), "d_over_c_dense": ratio("d", "c", "dense"),
        "e_over_d": ratio("e", "d", "sparse") if client is not None else None,
        "chips_per_s_d": float(df[(df.layout == "sparse") & (df.n == ref_n)]
                               .iloc[0]["chips_per_s_d"]),
        "rows": rows,
    }
    e2e = end_to_end(stack, item, ref_n, rng, repeats)
    summary.update(e2e)
    print(f"\nend to end, sparse N={ref_n}: cut {e2e['seconds_cut']:.2f} s, cut + Zarr + "
          f"GeoTIFF/JSON/JPG writes {e2e['seconds_cut_and_write']:.2f} s "
          f"(+{100 * e2e['write_overhead_sparse']:.0f} %), "
          f"{e2e['chips_per_s_end_to_end']:.0f} chips/s")
    if args.plot:
        plot(df, Path(args.plot))
    print(json.dumps(summary, default=float))


def end_to_end(stack, item: dict, n: int, rng: np.random.Generator, repeats: int) -> dict:
    """Cut-only time (d) versus cut + every store (write_chips), sparse points."""
    import tempfile

    from s2xr.config import GateConfig, StorageConfig
    from s2xr.gate import gate_chips
    from s2xr.store import write_chips

    pts = make_points(item, n, False, rng)
    plan = plan_frame(item, pts, for_writing=True)
    cut_t, all_t = [], []
    for _ in range(repeats):
        _, t_cut, _ = timed(method_d, stack, item, pts)
        cut_t.append(t_cut)
        with tempfile.TemporaryDirectory() as tmp:
            reset_dataset_cache()
            ds = gate_chips(cut_chips(stack, plan, ChipSpec()), GateConfig(enabled=False))
            t = time.perf_counter()
            write_chips(ds, plan, StorageConfig(root=Path(tmp)), GateConfig(enabled=False))
            all_t.append(time.perf_counter() - t)
    tc, ta = statistics.median(cut_t), statistics.median(all_t)
    return {"seconds_cut": tc, "seconds_cut_and_write": ta,
            "write_overhead_sparse": ta / tc - 1, "chips_per_s_end_to_end": n / ta}


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    labels = {"a": "(a) predecessor", "b": "(b) best naive", "c": "(c) work floor",
              "d": "(d) s2xr threads", "e": "(e) s2xr LocalCluster"}
    for ax, layout in zip(axes, ("sparse", "dense"), strict=True):
        sub = df[df.layout == layout]
        for m, lab in labels.items():
            ax.plot(sub.n, sub[f"s_{m}"], marker="o", label=lab)
        ax.set(xscale="log", yscale="log", title=f"{layout} points", xlabel="chips (N)")
    axes[0].set_ylabel("seconds")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
