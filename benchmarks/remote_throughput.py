"""Remote chip throughput: chips from COGs over HTTP, against a server with real latency.

    .venv/bin/python benchmarks/remote_throughput.py                 # N = 100, 1000 at 20/60 ms
    .venv/bin/python benchmarks/remote_throughput.py --quick         # < 1 min, a 2048² window
    .venv/bin/python benchmarks/remote_throughput.py --sizes 1000 --latencies 20

The scene, points and chips are chip_throughput.py's (the embedded world at full tile size,
N sparse / dense points over water, the product's default chips, checked equal across
methods), but every COG is read over HTTP from s2xr.demo.cog_server.CogServer on 127.0.0.1,
which waits ``latency`` before answering each request (requests overlap their waits):

  (a) predecessor — open each asset per chip, read a window, close (GDAL defaults)
  (b) best naive  — datasets opened once, windowed reads, one thread (GDAL defaults)
  (d) s2xr        — stack_scenes(items with http hrefs) + cut_chips on the threads scheduler

Each run is its own process (cold GDAL and s2xr caches, one process's header reads) and
reads the COGs at fresh URLs. The server counts requests and bytes per run and logs every
range it served, so each run reports requests and bytes per chip, header reads, COG blocks
fetched (and fetched again), requests in flight (peak; mean = busy time / wall time), and
the latency floor = distinct blocks the chips touch × latency ÷ requests in flight (d's
peak). (a) costs minutes at 60 ms: it is skipped above --a-max (default N 1000 at 20 ms, 100
at 60 ms); its chips/s at the largest N it ran stands in for its ratio (its per-chip cost
does not fall with N). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from collections import Counter
from pathlib import Path

import numpy as np
import rasterio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import chip_throughput as ct  # noqa: E402

from s2xr.demo.cog_server import CogServer, http_items  # noqa: E402
from s2xr.scenes.windows import plan_window  # noqa: E402

ASSETS = (*ct.BANDS, "scl")
METHODS = "bad"


# ---------------------------------------------------------------------------- one run
def worker(spec_path: str) -> None:
    """Run one method in this (fresh) process; print {seconds, digest}."""
    spec = json.loads(Path(spec_path).read_text())
    item, m = spec["item"], spec["method"]
    import pandas as pd

    pts = pd.DataFrame({"x_left": spec["x_left"], "y_top": spec["y_top"]})
    t = time.perf_counter()
    if m == "d":
        from s2xr.scenes import stack_scenes

        stack = stack_scenes([item], list(ct.BANDS))
        res, _ = ct.method_d(stack, item, pts)
    else:
        recs = ct.records(item, pts)
        res = ct.method_a(recs) if m == "a" else ct.method_b(recs)
    dt = time.perf_counter() - t
    refl = res[0]
    print(json.dumps({"seconds": dt, "digest": ct.digest(res),
                      "nan_share": float(np.isnan(refl).mean())}))


def run_method(m: str, item: dict, pts, timeout_s: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDAL_", "CPL_", "VSI"))}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"method": m, "item": item, "x_left": pts.x_left.tolist(),
                   "y_top": pts.y_top.tolist()}, f)
    try:
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--worker", f.name], env=env,
                              capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - t
    finally:
        Path(f.name).unlink()
    if proc.returncode:
        raise SystemExit(f"method {m} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


# ---------------------------------------------------------------------------- COG layout
class Layout:
    """Where each COG block of each asset lies in its file (full resolution)."""

    def __init__(self, item: dict, root: Path) -> None:
        self.files: dict[str, dict] = {}
        for a in ASSETS:
            path = Path(item["assets"][a]["href"].removeprefix("file://"))
            with rasterio.open(path) as src:
                bh, bw = src.block_shapes[0]
                nr, nc = -(-src.height // bh), -(-src.width // bw)
                blocks = {}
                for i in range(nr):
                    for j in range(nc):
                        off = src.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=1)
                        size = src.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=1)
                        if off and size and int(size):
                            blocks[(i, j)] = (int(off), int(size))
                spans = sorted((o, o + s - 1, ij) for ij, (o, s) in blocks.items())
                rel = "/" + path.resolve().relative_to(root.resolve()).as_posix()
                self.files[a] = {"rel": rel, "src_transform": src.transform,
                                 "shape": (src.height, src.width), "block": (bh, bw),
                                 "blocks": blocks, "spans": spans,
                                 "starts": [s[0] for s in spans],
                                 "data_start": spans[0][0] if spans else 0}
        self.by_rel = {v["rel"]: a for a, v in self.files.items()}

    def touched(self, pts) -> tuple[list[set], set]:
        """Blocks each chip touches (per chip: set of (asset, i, j)) and their union."""
        per_chip: list[set] = [set() for _ in range(len(pts))]
        for a, f in self.files.items():
            bh, bw = f["block"]
            near = a == "scl" or f["src_transform"].a == 10.0
            for k, (x, y) in enumerate(zip(pts.x_left, pts.y_top, strict=True)):
                p = plan_window(f["src_transform"], f["shape"], x, y, 256, 10.0, nearest=near)
                if p.empty:
                    continue
                rows = range(p.rows[0] // bh, (p.rows[1] - 1) // bh + 1)
                cols = range(p.cols[0] // bw, (p.cols[1] - 1) // bw + 1)
                per_chip[k].update((a, i, j) for i in rows for j in cols)
        return per_chip, set().union(*per_chip)

    def block_bytes(self, blocks: set) -> int:
        return sum(self.files[a]["blocks"].get((i, j), (0, 0))[1] for a, i, j in blocks)

    def classify(self, ranges) -> dict:
        """Header reads, block reads and block bytes fetched (in block-equivalents: a block
        counts once per full copy of its bytes; GDAL's reads are rounded to 16 KB chunks, so
        a read also brushes its neighbours) of the served ranges."""
        header = blocks_req = 0
        overlap: Counter = Counter()
        for rel, first, last in ranges:
            a = self.by_rel.get(rel)
            if a is None:
                continue
            f = self.files[a]
            header += first < f["data_start"]
            k = max(bisect_right(f["starts"], first) - 1, 0)
            hit = False
            while k < len(f["spans"]) and f["spans"][k][0] <= last:
                b0, b1, ij = f["spans"][k]
                if b1 >= first:
                    overlap[(a, *ij)] += min(b1, last) - max(b0, first) + 1
                    hit = True
                k += 1
            blocks_req += hit
        size = {(a, *ij): s for a, f in self.files.items() for ij, (_, s) in f["blocks"].items()}
        fetched = sum(v / size[k] for k, v in overlap.items())
        whole = sum(1 for k, v in overlap.items() if v >= size[k])
        return {"header_requests": header, "block_requests": blocks_req,
                "blocks_fetched": fetched, "blocks_fetched_whole": whole,
                "blocks_refetched": sum(max(v - size[k], 0) / size[k]
                                        for k, v in overlap.items())}


def relayout(item: dict, root: Path, blocksize: int) -> tuple[dict, Path]:
    """The scene's COGs rewritten with Earth Search's layout (``blocksize``-px blocks,
    DEFLATE, 4 overview levels), cached beside the world → (item with their file:// hrefs,
    their root)."""
    import rasterio.shutil

    dst_root = root.parent / f"{root.name}-blocks{blocksize}"
    assets = {}
    for a in ASSETS:
        src = Path(item["assets"][a]["href"].removeprefix("file://"))
        dst = dst_root / src.resolve().relative_to(root.resolve())
        if not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_suffix(".tmp.tif")
            rasterio.shutil.copy(src, tmp, driver="COG", compress="DEFLATE", blocksize=blocksize,
                                 overviews="IGNORE_EXISTING", overview_count=4,
                                 overview_resampling="NEAREST" if a == "scl" else "AVERAGE",
                                 BIGTIFF="IF_SAFER")
            tmp.replace(dst)
        assets[a] = {**item["assets"][a], "href": dst.resolve().as_uri()}
    return {**item, "assets": {**item["assets"], **assets}}, dst_root


# ---------------------------------------------------------------------------- main
def parse_amax(text: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in (p.split("=") for p in text.split(","))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="2048² window, small N, 20 ms: < 1 min")
    ap.add_argument("--sizes", default=None, help="comma-separated N values (default 100,1000)")
    ap.add_argument("--latencies", default=None, help="ms per request (default 20,60)")
    ap.add_argument("--a-max", default="20=1000,60=100",
                    help="largest N (a) runs at, per latency in ms (others: the smallest)")
    ap.add_argument("--methods", default=METHODS,
                    help="which of a, b, d to run (default: all; ratios need d and the other)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    ap.add_argument("--blocksize", type=int, default=None,
                    help="serve copies of the COGs with this block size (Earth Search: 1024; "
                         "default: the world's own 512-px COGs)")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [20] if args.quick else [100, 1000])
    lats = [int(s) for s in args.latencies.split(",")] if args.latencies else (
        [20] if args.quick else [20, 60])
    amax = parse_amax(args.a_max)
    item, root = ct.scene(args.quick)
    if args.blocksize:
        item, root = relayout(item, root, args.blocksize)
    layout = Layout(item, root)
    rng = np.random.default_rng(42)
    points = {(lay, n): ct.make_points(item, n, lay == "dense", rng)
              for lay in ("sparse", "dense") for n in sizes}
    rows = []
    with CogServer(root, record=True) as srv:
        for lat in lats:
            srv.configure(latency_s=lat / 1000)
            for (lay, n), pts in points.items():
                per_chip, distinct = layout.touched(pts)
                nb = len(distinct)
                ref = None
                for m in args.methods:
                    if m == "a" and n > amax.get(lat, min(sizes)):
                        continue
                    tag = f"{m}-{lat}ms-{lay}-{n}-{time.time_ns()}"
                    hitem = http_items([item], root, srv.url, tag=tag)[0]
                    srv.reset()
                    out = run_method(m, hitem, pts, args.timeout)
                    c = srv.counts()
                    if ref is None:
                        ref = out["digest"]
                    elif out["digest"] != ref:
                        raise SystemExit(f"method {m} differs from (b): {lay} N={n} {lat} ms")
                    cls = layout.classify(c.ranges)
                    row = {"latency_ms": lat, "layout": lay, "n": n, "method": m,
                           "seconds": out["seconds"], "chips_per_s": n / out["seconds"],
                           "requests": c.requests, "requests_per_chip": c.requests / n,
                           "bytes_per_chip": c.bytes_served / n,
                           "http_404": c.by_status.get(404, 0), "head": c.by_method.get("HEAD", 0),
                           "peak_in_flight": c.peak_in_flight,
                           "mean_in_flight": c.busy_s / out["seconds"],
                           "blocks_touched_per_chip": float(np.mean([len(s) for s in per_chip])),
                           "distinct_blocks": nb,
                           "distinct_blocks_per_chip": nb / n,
                           "bytes_over_blocks": c.bytes_served / layout.block_bytes(distinct),
                           "floor_s": nb * lat / 1000 / max(c.peak_in_flight, 1),
                           "nan_share": out["nan_share"], **cls}
                    row["over_floor"] = row["floor_s"] / row["seconds"]
                    rows.append(row)
                    print(f"{lat:3d} ms {lay:6} N={n:5} ({m}) {row['chips_per_s']:8.1f} chips/s  "
                          f"{row['requests_per_chip']:6.2f} req/chip  "
                          f"{row['bytes_per_chip'] / 1e3:8.1f} kB/chip  in flight "
                          f"{row['peak_in_flight']:3d} peak {row['mean_in_flight']:5.1f} mean  "
                          f"headers {cls['header_requests']:4d}  blocks fetched "
                          f"{cls['blocks_fetched']:7.1f} (again {cls['blocks_refetched']:6.1f}) of "
                          f"{nb} touched", flush=True)
    summary = summarise(rows, sizes, lats, args.quick)
    summary.update(blocksize=layout.files["blue"]["block"][0], gdal=rasterio.__gdal_version__,
                   gdal_env_a_b="GDAL defaults (no GDAL_*/CPL_* set)")
    print_table(rows)
    print(json.dumps(summary, default=float))


def summarise(rows: list[dict], sizes: list[int], lats: list[int], quick: bool) -> dict:
    ref_n = 1000 if 1000 in sizes else max(sizes)

    def pick(lat: int, lay: str, m: str, n: int | None = None) -> dict | None:
        cand = [r for r in rows if r["latency_ms"] == lat and r["layout"] == lay
                and r["method"] == m and (n is None or r["n"] == n)]
        return max(cand, key=lambda r: r["n"]) if cand else None

    out: dict = {"benchmark": "remote_throughput", "quick": quick, "n_ref": ref_n}
    for lat in lats:
        for lay in ("sparse", "dense"):
            d = pick(lat, lay, "d", ref_n)
            for m in "ab":
                o = pick(lat, lay, m, ref_n) or pick(lat, lay, m)
                key = f"d_over_{m}_{lat}ms_{lay}"
                out[key] = d["chips_per_s"] / o["chips_per_s"] if d and o else None
                if o is not None and o["n"] != ref_n:
                    out[f"n_{m}_{lat}ms_{lay}"] = o["n"]
            out[f"d_over_floor_{lat}ms_{lay}"] = d["over_floor"] if d else None
        for m in "ab":  # the worse of sparse and dense: what the targets must hold for
            vals = [out[f"d_over_{m}_{lat}ms_{lay}"] for lay in ("sparse", "dense")]
            out[f"d_over_{m}_{lat}ms"] = min(v for v in vals if v is not None) if any(
                v is not None for v in vals) else None
        vals = [out[f"d_over_floor_{lat}ms_{lay}"] for lay in ("sparse", "dense")]
        out[f"d_over_floor_{lat}ms"] = min(v for v in vals if v is not None)
    lat0 = lats[0]
    ds = [pick(lat0, lay, "d", ref_n) for lay in ("sparse", "dense")]
    out["requests_per_chip_d"] = max(r["requests_per_chip"] for r in ds if r)
    out["bytes_over_blocks_d"] = max(r["bytes_over_blocks"] for r in ds if r)
    out["distinct_blocks_per_chip"] = {r["layout"]: r["distinct_blocks_per_chip"] for r in ds if r}
    out["rows"] = rows
    return out


def print_table(rows: list[dict]) -> None:
    import pandas as pd

    cols = ["latency_ms", "layout", "n", "method", "chips_per_s", "requests_per_chip",
            "bytes_per_chip", "distinct_blocks_per_chip", "header_requests", "blocks_refetched",
            "peak_in_flight", "mean_in_flight", "floor_s", "seconds"]
    df = pd.DataFrame(rows)[cols]
    df["bytes_per_chip"] = (df["bytes_per_chip"] / 1e3).round(1)
    print("\nbytes_per_chip in kB; floor_s = distinct blocks × latency ÷ peak requests in flight")
    print(df.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
