"""The `s2xr` CLI: `chip` through CliRunner, `demo` as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import main
from s2xr.store import read_index


def test_chip_command(world, stac_server, tmp_path):
    cfg = {"stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                    "window_hours": 6}, "storage": {"root": str(tmp_path / "ignored")}}
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    ais = pd.read_csv(world.ais_path)
    truth = world.truth()
    ships = truth.loc[truth.placement == "water", "mmsi"].drop_duplicates().head(5)
    ais_path = tmp_path / "ais.xlsx"
    ais.loc[ais.mmsi.isin(ships)].iloc[::20].to_excel(ais_path, index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["chip", "--config", str(cfg_path), "--ais", str(ais_path),
                                    "--out", str(out), "--no-swir"])
    assert res.exit_code == 0, res.output
    assert "s2xr chip summary" in res.output and "passed the gate" in res.output
    idx = read_index(out)
    assert len(idx) > 0 and set(idx.bands) == {"blue,green,red,nir"}
    assert not (tmp_path / "ignored").exists()


def test_chip_command_serves_the_embedded_world_itself(world, tmp_path, monkeypatch):
    """With configs/demo.yaml (stac.api_url: null) `s2xr chip` starts and stops the world's
    STAC API itself instead of deferring every job as "STAC unavailable"; it reads the AIS
    file once (checked before the world is served, then handed to the job)."""
    import os

    import s2xr.ais
    from pipelines import chip_job

    reads: list[str] = []
    real = s2xr.ais.read_ais_table
    for mod in (s2xr.ais, chip_job):
        monkeypatch.setattr(mod, "read_ais_table",
                            lambda src, **kw: (reads.append(str(src)), real(src, **kw))[1])

    out = tmp_path / "demo"
    out.mkdir()
    os.symlink(world.root, out / "world")
    ais = pd.read_csv(world.ais_path)
    truth = world.truth()
    ships = truth.loc[truth.placement == "water", "mmsi"].drop_duplicates().head(4)
    ais_path = tmp_path / "ais.csv"
    ais.loc[ais.mmsi.isin(ships)].iloc[::20].to_csv(ais_path, index=False)
    res = CliRunner().invoke(main, ["chip", "--config", "configs/demo.yaml", "--ais",
                                    str(ais_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert reads == [str(ais_path)]
    idx = read_index(out)
    assert len(idx) > 0 and set(idx.mmsi) <= set(ships)
    assert "deferred (STAC down)" in res.output
    line = next(ln for ln in res.output.splitlines() if "deferred (STAC down)" in ln)
    assert line.split()[-1] == "0"


def test_cli_errors_are_clean(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stac:\n  colection: x\n")
    ais = tmp_path / "a.csv"
    ais.write_text("mmsi,lat,lon\n224123456,36,-5.4\n")
    res = CliRunner().invoke(main, ["chip", "--config", str(bad), "--ais", str(ais)])
    assert res.exit_code == 2
    assert "stac.colection: unknown key" in res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path):
    out = tmp_path / "demo"
    exe = Path(sys.executable).parent / "s2xr"
    proc = subprocess.run([str(exe), "demo", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    idx = read_index(out)
    n = len(idx)
    assert n > 0 and idx.qa_pass.sum() > 0
    assert f"{n} chips cut: {idx.qa_pass.sum()} passed the gate" in proc.stdout
    assert "STAC API stopped" in proc.stdout
    assert "windows chipped" in proc.stdout and "s2xr dashboard" in proc.stdout
    assert (out / "plan" / "overpass_schedule.csv").is_file()  # the whole run: predict,
    assert (out / "indexes" / "ais_observations.parquet").is_file()  # capture, chip
    assert (out / "chips.zarr").is_dir()
    assert len(list((out / "chips").rglob("*.tif"))) == idx.qa_pass.sum()
