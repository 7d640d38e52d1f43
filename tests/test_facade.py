"""The ``s2xr`` façade: an explicit ``__all__`` imported lazily, the installed version,
``py.typed``."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import s2xr

ROOT = Path(__file__).resolve().parent.parent


def test_every_public_name_resolves_to_its_home():
    public = s2xr.__all__
    assert len(public) == len(set(public))
    for name in public:
        obj = getattr(s2xr, name)
        home = importlib.import_module(s2xr._LAZY[name])
        assert obj is getattr(home, name), name
    assert set(s2xr._LAZY) == set(public)
    assert set(public) <= set(dir(s2xr))


def test_star_import_gives_the_public_names():
    ns: dict[str, object] = {}
    exec("from s2xr import *", ns)
    assert set(s2xr.__all__) <= set(ns)
    assert ns["cut_chips"] is s2xr.cut_chips


def test_unknown_attribute_is_an_attribute_error():
    try:
        s2xr.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("s2xr.no_such_thing resolved")


def test_version_comes_from_the_package_metadata():
    assert s2xr.__version__ == importlib.metadata.version("s2xr")


def test_import_is_cheap():
    code = ("import sys, s2xr; heavy = sorted(m for m in ('xarray', 'dask', 'numpy', "
            "'pandas', 'rasterio', 's2xr.config', 's2xr.chips') if m in sys.modules); "
            "print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_py_typed_ships():
    assert (Path(s2xr.__file__).parent / "py.typed").is_file()
    files = importlib.metadata.files("s2xr") or []
    # an editable install lists no package files; a wheel must carry the marker
    if any(str(f).startswith("s2xr/") for f in files):
        assert any(str(f) == "s2xr/py.typed" for f in files)
