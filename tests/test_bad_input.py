"""Bad input: each gets a clear message and, in a batch, is recorded and skipped."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.chip_job import run_chip_job
from s2xr.config import StacConfig, build_config
from s2xr.demo import StacApiServer
from s2xr.demo.stac_server import free_port
from s2xr.errors import StacError, StorageError
from s2xr.scenes import StacApiSource, search_scenes
from s2xr.store import read_index
from s2xr.testing import Fault, FaultProxy


def cfg_for(root, url, **stac):
    return build_config({"stac": {"api_url": url, "collection": "sentinel-2-l2a",
                                  "window_hours": 6, **stac},
                         "storage": {"root": str(root)}}, environ={}, dotenv_path=None)


def few_ships(world, n=6):
    ais = pd.read_csv(world.ais_path)
    truth = world.truth()
    keep = truth.loc[truth.placement == "water", "mmsi"].drop_duplicates().head(n)
    return ais.loc[ais.mmsi.isin(keep)].reset_index(drop=True)


def test_stac_server_down_is_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    pts = pd.DataFrame({"mmsi": [224123456], "lon": [-5.4], "lat": [36.0],
                        "time": [pd.Timestamp("2026-09-30T11:00Z")]})
    cfg = StacConfig(api_url=url, collection="sentinel-2-l2a", max_retries=1, backoff_s=0)
    with pytest.raises(StacError, match=r"cannot open STAC API http://127\.0\.0\.1"):
        search_scenes(pts, cfg, StacApiSource(url, cfg))


def test_search_retries_429_and_5xx_then_succeeds(world):
    proxy = FaultProxy("http://127.0.0.1:0")
    with StacApiServer(world.collection_path, world.items_path, public_url=proxy.url) as srv:
        proxy.upstream = srv.url
        with proxy:
            cfg = StacConfig(api_url=proxy.url, collection="sentinel-2-l2a", window_hours=6,
                             max_retries=3, backoff_s=0.05)
            src = StacApiSource(proxy.url, cfg)
            pts = pd.read_csv(world.ais_path).head(5)
            clean = search_scenes(pts, cfg, src)
            n_clean = proxy.counts["/search"]
            proxy.reset()
            proxy.inject(Fault.status(429, {"Retry-After": "1"}), Fault.status(503))
            res = search_scenes(pts, cfg, src)
            assert [i["id"] for i in res.items] == [i["id"] for i in clean.items]
            assert len(res.items) >= 1
            assert proxy.counts["/search"] == n_clean + 2  # the 429 and the 503 were retried
            proxy.inject(*[Fault.status(500)] * 10)
            with pytest.raises(StacError, match=r"STAC search .* failed"):
                search_scenes(pts, cfg, src)


def test_missing_band_and_corrupt_cog_are_recorded_and_skipped(world, tmp_path):
    """A copy of the world where one item lacks SWIR and another has a corrupt COG."""
    items = world.items()
    broken_world = tmp_path / "stac"
    broken_world.mkdir()
    by_id = {it["id"]: it for it in items}
    no_swir = world.item_ids[2]
    del by_id[no_swir]["assets"]["swir16"]
    corrupt = world.item_ids[3]
    src = by_id[corrupt]["assets"]["nir"]["href"].removeprefix("file://")
    bad = tmp_path / "B08_corrupt.tif"
    shutil.copy(src, bad)
    with open(bad, "r+b") as f:
        f.truncate(16_000)  # header intact, tile data gone
    by_id[corrupt]["assets"]["nir"]["href"] = bad.as_uri()
    (broken_world / "items.json").write_text(json.dumps({"type": "FeatureCollection",
                                                         "features": list(by_id.values())}))
    shutil.copy(world.collection_path, broken_world / "collection.json")
    with StacApiServer(broken_world / "collection.json", broken_world / "items.json") as srv:
        res = run_chip_job(cfg_for(tmp_path / "out", srv.url), few_ships(world, 12))
    reasons = res.rejects
    assert (reasons.item_id == no_swir).any()
    assert reasons.loc[reasons.item_id == no_swir, "reason"].str.contains("swir16").all()
    idx = read_index(tmp_path / "out")
    from_corrupt = idx.loc[idx.scene_id == corrupt]
    assert len(from_corrupt) > 0
    assert (~from_corrupt.qa_pass).all()
    assert from_corrupt.qa_reason.str.startswith("read_error").all()
    # the other scenes still produced good chips
    assert idx.loc[idx.scene_id != corrupt, "qa_pass"].sum() > 0


def test_bad_ais_rows_are_recorded_and_skipped(world, stac_server, tmp_path):
    ais = few_ships(world, 4)
    bad = pd.DataFrame({"mmsi": [12345, 224000001, 224000002, 224000003],
                        "time": [ais.time[0], "not a time", ais.time[0], ais.time[0]],
                        "lat": [36.0, 36.0, 95.0, float("nan")],
                        "lon": [-5.4, -5.4, -5.4, -5.4]})
    table = pd.concat([ais, bad], ignore_index=True)
    res = run_chip_job(cfg_for(tmp_path / "out", stac_server.url), table)
    ais_rej = res.rejects.loc[res.rejects.stage == "ais"]
    assert len(ais_rej) == 4
    assert res.n_passed > 0
    stored = pd.read_parquet(tmp_path / "out" / "indexes" / "rejects.parquet")
    assert (stored.stage == "ais").sum() == 4


def test_unwritable_output_is_a_clear_error(world, stac_server, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="not writable"):
        run_chip_job(cfg_for(blocker / "out", stac_server.url), few_ships(world, 1))
    assert not list(tmp_path.glob("**/*.tmp"))


def test_path_parts_are_validated(tmp_path):
    from s2xr.store.layout import chip_stem, safe_tile

    with pytest.raises(StorageError, match="9 digits"):
        chip_stem(tmp_path, "train", "../../etc", pd.Timestamp("2026-01-01"), "0" * 16)
    with pytest.raises(StorageError, match="16 hex"):
        chip_stem(tmp_path, "train", 224123456, pd.Timestamp("2026-01-01"), "../x")
    with pytest.raises(StorageError, match="tile ID"):
        safe_tile("30STE/../../x")


def test_bad_mmsis_never_poison_the_dataset(world, stac_server, tmp_path):
    """MMSIs that are not ITU-R M.585 identities are rejects with the raw text kept as
    `value` and <NA> as `mmsi`, so rejects.parquet keeps its types and later jobs on the
    same root append to it; none of them reaches a chip path or the index."""
    ais = few_ships(world, 3)
    path = tmp_path / "ais.csv"
    ais.to_csv(path, index=False)
    bad = ["../../tmp/x", "18446744073709551615", "2.35e8", '" 235000001 "', "123456789"]
    blank = "," * (len(ais.columns) - 4)
    with path.open("a") as f:
        for m in bad:
            f.write(f"{m},{ais.time[0]},36.0,-5.4{blank}\n")
    cfg = cfg_for(tmp_path / "out", stac_server.url)
    res = run_chip_job(cfg, path)
    assert res.n_passed > 0
    ais_rej = res.rejects.loc[res.rejects.stage == "ais"]
    assert len(ais_rej) == len(bad) and ais_rej.mmsi.isna().all()
    assert ais_rej.reason.str.startswith("mmsi: ").all()
    rejects = tmp_path / "out" / "indexes" / "rejects.parquet"
    stored = pd.read_parquet(rejects)
    assert pa.types.is_integer(pq.read_schema(rejects).field("mmsi").type)
    assert set(read_index(tmp_path / "out").mmsi) <= set(ais.mmsi)
    # a second job with other rejects appends to the same typed file
    more = pd.concat([few_ships(world, 2), pd.DataFrame({
        "mmsi": [224000009, "oops"], "time": [ais.time[0]] * 2, "lat": [95.0, 36.0],
        "lon": [-5.4, -5.4]})], ignore_index=True)
    run_chip_job(cfg, more)
    again = pd.read_parquet(rejects)
    assert len(again) > len(stored)
    assert pa.types.is_integer(pq.read_schema(rejects).field("mmsi").type)
    assert 224000009 in set(again.mmsi.dropna().astype("int64"))
