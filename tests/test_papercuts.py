"""The papercuts a new user met (issue 14, item 5), one test (or a few) each: output file
modes, bad input refused before expensive work, `s2xr chip` with nothing written,
`qa-report --out FILE.html`, publish-stac's log, doctor's output, the demo's chip counts,
and environment.yml against pyproject."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import main
from s2xr.store.files import write_contact_sheet
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def write_cfg(tmp_path: Path, root: Path, stac_url: str | None = None, **sections) -> Path:
    data: dict = {"storage": {"root": str(root)}, **sections}
    if stac_url:
        data["stac"] = {"api_url": stac_url, "collection": "sentinel-2-l2a",
                        "window_hours": 6}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def few_ships_ais(world, path: Path, n_ships: int = 4) -> Path:
    """Every 20th fix of a few ships that are on the water: a job of a few chips."""
    ais = pd.read_csv(world.ais_path)
    truth = world.truth()
    ships = truth.loc[truth.placement == "water", "mmsi"].drop_duplicates().head(n_ships)
    ais.loc[ais.mmsi.isin(ships)].iloc[::20].to_csv(path, index=False)
    return path


def invoke(*args: str):
    res = CliRunner().invoke(main, ["-q", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def small_dataset(world, stac_server, tmp_path_factory) -> tuple[Path, Path]:
    """(dataset root, its config file): `s2xr chip` on a few ships of the world."""
    tmp = tmp_path_factory.mktemp("small")
    root = tmp / "ds"
    cfg = write_cfg(tmp, root, stac_server.url)
    invoke("chip", "--config", cfg, "--ais", few_ships_ais(world, tmp / "ais.csv"),
           "--no-swir")
    return root, cfg


# --------------------------------------------------------------------------- 1. file modes

@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_every_output_file_follows_the_umask(world, stac_server, tmp_path, mask):
    """Index, labels, rejects, footprints, chip files, cube, ops DB, manifest, card, QA
    report, STAC, label export, contact sheet and schedule CSV: 0666 & ~umask (0644 under
    022), directories 0777 & ~umask — never tempfile's private 0600."""
    root = tmp_path / "ds"
    cfg = write_cfg(tmp_path, root, stac_server.url)
    ais = few_ships_ais(world, tmp_path / "ais.csv")
    with umask(mask):
        invoke("chip", "--config", cfg, "--ais", ais, "--no-swir")
        for cmd in ("dataset-card", "qa-report", "publish", "publish-stac", "export-labels"):
            invoke(cmd, "--config", cfg)
        invoke("predict-overpasses", "--config", cfg, "--mode", "tle", "--tiles", "30STF",
               "--start", "2026-09-25", "--days", "5")
        idx = read_index(root)
        jpgs = [(root / p).with_suffix(".jpg") for p in idx.loc[idx.qa_pass, "path"]]
        assert write_contact_sheet(DatasetLayout(root).quicklooks, jpgs) is not None
    layout = DatasetLayout(root)
    for must in (layout.index, layout.labels, layout.rejects, layout.manifest,
                 layout.card_yaml, layout.card_md, layout.qa_report, layout.quicklooks,
                 layout.schedule, layout.stac_catalog, layout.stac_geoparquet, layout.ops_db):
        assert must.is_file(), must
    assert len(list(layout.chips.rglob("*.tif"))) == idx.qa_pass.sum() > 0
    assert list(layout.exports.rglob("*.json"))
    wrong = {}
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        if not p.is_symlink() and mode != want:
            wrong[str(p.relative_to(root))] = f"{mode:o} (want {want:o})"
    assert not wrong, wrong


# --------------------------------------------------------------------------- 6. doctor

def test_doctor_prints_each_check_once(tmp_path):
    """Each check is one line of the command's output (stdout and stderr together): the
    library logs them at DEBUG only, plus one INFO summary for the log file."""
    cfg = write_cfg(tmp_path, tmp_path / "ds")
    res = CliRunner().invoke(main, ["doctor", "--offline", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for name in ("config", "python", "package numpy", "package zarr", "gdal", "storage",
                 "ops db"):
        hits = [ln for ln in lines if f" {name} " in ln or ln.endswith(f" {name}")]
        assert len(hits) == 1, (name, hits)
    assert sum("doctor:" in ln for ln in lines) == 1  # the summary log line
    assert lines[-1] == "all checks passed" or "all checks passed" in res.stdout


def test_doctor_skip_does_not_run_the_check(tmp_path, monkeypatch):
    """--skip ais: the AIS endpoint is not contacted (before, it was checked, then hidden)."""
    import s2xr.ops.doctor as doctor

    def boom(*_a, **_k):
        raise AssertionError("check_ais ran although skipped")

    monkeypatch.setattr(doctor, "check_ais", boom)
    cfg = write_cfg(tmp_path, tmp_path / "ds", stac={"api_url": None})  # embedded world
    res = CliRunner().invoke(main, ["doctor", "--skip", "ais", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "embedded offline world" in res.output and " ais " not in res.output


# --------------------------------------------------------------------------- 5. publish-stac

def test_publish_stac_logs_no_third_party_item_dump(small_dataset):
    """rustac's ``stac_io`` logger wrote the whole ItemCollection as one INFO line (190 KB
    for 76 chips, growing with the dataset); the CLI's logging setup quiets it."""
    _root, cfg = small_dataset
    res = CliRunner().invoke(main, ["publish-stac", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "stac-geoparquet" in res.stdout
    assert "stac_io" not in res.stderr
    assert max(map(len, res.output.splitlines())) < 300


# --------------------------------------------------------------------------- 4. qa-report

def test_qa_report_out_html_is_the_report_file(small_dataset, tmp_path):
    root, cfg = small_dataset
    report = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["qa-report", "--config", str(cfg), "--out", str(report)])
    assert res.exit_code == 0, res.output
    assert report.is_file()  # not a directory of that name holding an empty report
    page = report.read_text()
    n = len(read_index(root))
    assert "s2xr QA report" in page and f"{n} chips cut" in page and n > 0
    assert f"QA report {report}: " in res.output


def test_qa_report_refuses_a_root_that_is_no_dataset(tmp_path):
    missing = tmp_path / "no-such-dataset"
    res = CliRunner().invoke(main, ["qa-report", "--out", str(missing)])
    assert res.exit_code == 2, res.output
    assert f"no dataset at {missing}" in res.output and "Traceback" not in res.output
    assert not missing.exists()


# --------------------------------------------------------------------------- 2./3. s2xr chip

BAD_AIS = "mmsi,lat,lon,time\n12,36,-5.4,2026-10-02T10:00Z\n224123456,999,-5.4,2026-10-02T10:00Z\n"


def _printed_paths_exist(output: str) -> None:
    """Every path the command printed (under "outputs:") exists."""
    lines = output.split("\noutputs:\n", 1)[1].splitlines() if "\noutputs:\n" in output else []
    for ln in lines:
        if not ln.startswith("  "):
            break
        assert Path(ln.split(maxsplit=1)[1]).exists(), ln


def test_chip_bad_ais_is_refused_before_the_embedded_world_is_built(tmp_path):
    ais = tmp_path / "bad.csv"
    ais.write_text(BAD_AIS)
    root = tmp_path / "ds"
    cfg = write_cfg(tmp_path, root, stac={"api_url": None})
    res = CliRunner().invoke(main, ["chip", "--config", str(cfg), "--ais", str(ais)])
    assert res.exit_code == 2, res.output
    assert f"AIS file {ais}: no valid point (2 row(s) rejected" in res.output
    assert "is not 9 digits" in res.output and "nothing chipped" in res.output
    assert not DatasetLayout(root).world.exists() and not root.exists()


def test_chip_no_valid_row_prints_no_missing_path(stac_server, tmp_path):
    """With a real STAC API the job reads the file itself: the summary says why, no path
    that does not exist is printed, and the exit status is 2 (bad input)."""
    ais = tmp_path / "bad.csv"
    ais.write_text(BAD_AIS)
    root = tmp_path / "ds"
    cfg = write_cfg(tmp_path, root, stac_server.url)
    res = CliRunner().invoke(main, ["chip", "--config", str(cfg), "--ais", str(ais)])
    assert res.exit_code == 2, res.output
    assert "no chip was cut: nothing written" in res.output
    assert "no valid point" in res.output
    assert not DatasetLayout(root).index.exists()
    _printed_paths_exist(res.output)


def test_chip_without_a_scene_says_nothing_was_written(stac_server, tmp_path):
    """Valid points but no Sentinel-2 item: exit 0, "no chip was cut", no missing path."""
    ais = tmp_path / "nowhere.csv"
    ais.write_text("mmsi,lat,lon,time\n224123456,10,10,2026-10-02T10:00Z\n")
    root = tmp_path / "ds"
    cfg = write_cfg(tmp_path, root, stac_server.url)
    res = CliRunner().invoke(main, ["chip", "--config", str(cfg), "--ais", str(ais)])
    assert res.exit_code == 0, res.output
    assert "no chip was cut: nothing written" in res.output
    assert f"  index    {DatasetLayout(root).index}" not in res.output
    _printed_paths_exist(res.output)


# --------------------------------------------------------------------------- 2. bad numbers

@pytest.mark.parametrize("args", [
    ["run", "--days", "-1"], ["run", "--days", "0"], ["run", "--max-chips", "-3"],
    ["run", "--continuous", "--interval-min", "0"], ["run", "--max-cycles", "0"],
    ["demo", "--window-px", "10"], ["predict-overpasses", "--days", "-1"],
    ["predict-overpasses", "--window-minutes", "-5"], ["collect-ais", "--duration", "-5"],
    ["prune", "--dist-tol-m", "-1"], ["qa-report", "--alert-threshold", "2"],
    ["publish", "--samples", "-1"], ["ops", "retry", "--limit", "0"],
], ids=lambda a: "_".join(a).replace("--", ""))
def test_bad_numbers_are_refused_before_anything_starts(tmp_path, args):
    """click refuses them (exit 2, naming the option) before the command body runs: no
    dataset root, no world, no STAC or replay server."""
    root = tmp_path / "ds"
    cfg = write_cfg(tmp_path, root, stac={"api_url": None})
    res = CliRunner().invoke(main, [*args, "--config", str(cfg)])
    assert res.exit_code == 2, res.output
    assert "Invalid value" in res.output and args[-2] in res.output
    assert not root.exists()


def test_dashboard_port_out_of_range_is_refused(tmp_path):
    res = CliRunner().invoke(main, ["dashboard", "--port", "70000"])
    assert res.exit_code == 2 and "Invalid value" in res.output


# --------------------------------------------------------------------------- 7. demo counts

def test_demo_names_passed_chips_with_files_and_index_rows(small_dataset, tmp_path,
                                                           monkeypatch):
    """The demo's closing lines on a real dataset (its run stubbed): "N chips on disk" was
    the index rows, rejected chips included, which have no files."""
    import shutil
    from types import SimpleNamespace

    import pipelines.demo_cmd as demo_cmd

    src, _ = small_dataset
    root = tmp_path / "demo"
    shutil.copytree(src, root)
    idx = read_index(root)
    n_files = len(list((root / "chips").rglob("*.tif")))
    n_passed = int(idx.qa_pass.sum())
    assert n_files == n_passed > 0 and len(idx) > n_passed  # rejected chips: no files
    monkeypatch.setattr(demo_cmd, "run_batch", lambda *a, **k: SimpleNamespace(
        chip=SimpleNamespace(n_passed=2)))
    monkeypatch.setattr(demo_cmd, "print_run_result", lambda res: None)
    res = CliRunner().invoke(main, ["demo", "--out", str(root)])
    assert res.exit_code == 0, res.output
    assert (f"{len(idx)} chips cut: {n_passed} passed the gate (in the cube, with files under "
            f"chips/), {len(idx) - n_passed} rejected (index rows only, with the reason); "
            "2 of the passed are new this run") in res.output
    assert "chips on disk" not in res.output
    assert f"dataset:          {root.resolve()}" in res.output


# --------------------------------------------------------------------------- 8. environment

def _name(requirement: str) -> str:
    """The normalised distribution name of ``numpy>=2.0``, ``dask[array]>=1``, ``a=1.2``."""
    import re

    name = re.split(r"[\s\[=<>!~;]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _environment() -> tuple[dict[str, str], dict[str, str]]:
    """environment.yml: ({name: spec} from conda-forge, {name: spec} from pip)."""
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.update({_name(d): d for d in dep["pip"] if not d.startswith("-")})
        else:
            conda[_name(dep)] = dep
    return conda, pip


def test_environment_yml_names_exactly_pyprojects_packages():
    """The conda route installs every package `make` does (dependencies and the dashboard,
    ml and test extras) and nothing pyproject.toml does not name (python and pip aside)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("dashboard", "ml", "test"):
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    conda, pip = _environment()
    have = set(conda) | set(pip)
    assert not set(conda) & set(pip), "a package both from conda-forge and pip"
    assert sorted(wanted - have) == [], "missing from environment.yml"
    assert sorted(have - wanted - {"python", "pip"}) == [], "not in pyproject.toml"
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    assert "-e ." in next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]


def test_environment_yml_pins_equal_constraints():
    """Every exact pin in environment.yml is constraints.txt's version (what `make` installs
    and the suite passes with); python is the constraints' interpreter series."""
    import re

    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[_name(name)] = version.split(";")[0].strip()
    conda, pip = _environment()
    checked = 0
    for name, spec in {**conda, **pip}.items():
        m = re.fullmatch(r"[^=<>!~\s]+\s*==?\s*([\w.]+)", spec.split("#")[0].strip())
        if m is None or name == "python":
            continue
        assert pins.get(name) == m.group(1), f"{spec}: constraints.txt has {pins.get(name)}"
        checked += 1
    assert checked >= 5
    assert conda["python"] == "python=3.11"


def test_install_docs_name_routes_that_exist():
    """README names the conda route and a plain pip install from a clone beside make;
    docs/training.md no longer says `pip install s2xr[ml]` (no index serves s2xr)."""
    readme = (REPO / "README.md").read_text()
    assert "conda env create -f environment.yml" in readme
    assert 'pip install -c constraints.txt -e ".[test,dashboard,ml]"' in readme
    training = (REPO / "docs" / "training.md").read_text()
    assert "pip install s2xr[ml]" not in training
    assert '-e ".[ml]"' in training
