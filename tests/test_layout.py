"""Dataset paths are spelled in one place: :class:`s2xr.store.layout.DatasetLayout`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest

from s2xr.store.layout import DatasetLayout

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("s2xr", "pipelines", "dashboards")
LAYOUT_MODULE = REPO / "s2xr" / "store" / "layout.py"
# the embedded world's own directory layout (s2xr.demo.world.World: stac/items.json,
# ais/demo_ais.csv, ...), not a dataset's, happens to share two directory names
NOT_DATASET_PATHS = {("s2xr/demo/world.py", "stac"), ("s2xr/demo/world.py", "ais")}


def _names() -> dict[str, str]:
    return {k: v for k, v in vars(DatasetLayout).items()
            if k.isupper() and isinstance(v, str)}


def _is_file_name(name: str) -> bool:
    return "." in name.lstrip(".") or "{" in name


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (documentation may name the files)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _text(node: ast.AST) -> str | None:
    """A string literal, an f-string with ``{}`` for each formatted value, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    """Per layout name, what spells it in a string: a file name anywhere in the text (a
    ``{field}`` of a template matches any formatted value or glob); a directory name only
    as a path part (``"chips/…"``, ``"…/chips"``) — alone it is a common word, see
    :func:`_joins` for ``root / "chips"``."""
    out = []
    for key, name in _names().items():
        if _is_file_name(name):
            parts = [re.escape(p) for p in re.split(r"\{[a-z_]*\}", name)]
            rx = r"(\{\}|\*|[^/\s]+)".join(parts)
            out.append((key, re.compile(rf"(^|[^\w.-]){rx}($|[^\w-])")))
        else:
            out.append((key, re.compile(rf"(^|/){re.escape(name)}/|/{re.escape(name)}$")))
    return out


def _joins(tree: ast.AST) -> list[tuple[int, str]]:
    """``x / "name"`` with a layout directory (or file) name: a path built by hand."""
    names = set(_names().values())
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                t = _text(side)
                if t is not None and t in names:
                    hits.append((node.lineno, t))
    return hits


def spelled_paths(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docs = _docstrings(tree)
    pats = _patterns()
    rel = path.relative_to(REPO).as_posix()
    found = [f"{rel}:{line}: {name!r} joined by hand" for line, name in _joins(tree)
             if (rel, name) not in NOT_DATASET_PATHS]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if id(node) in docs or id(node) in skip:
            continue
        t = _text(node)
        if t is None:
            continue
        for key, rx in pats:
            if rx.search(t):
                found.append(f"{rel}:{node.lineno}: {t!r} spells DatasetLayout.{key}")
    return found


def test_no_dataset_path_is_spelled_outside_the_layout():
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))
             if p != LAYOUT_MODULE]
    assert len(files) > 50
    found = [hit for f in files for hit in spelled_paths(f)]
    assert not found, "use s2xr.store.layout.DatasetLayout:\n" + "\n".join(found)


@pytest.mark.parametrize("code", [
    'p = root / "indexes" / "tiles.parquet"',
    'p = root / "chips"',
    'p = f"{root}/indexes/rejects.parquet"',
    'p = root / f"tiles_{day}.geojson"',
    'p = base.glob("*/ais_overpass_*.parquet")',
    'msg = f"see {root}/reports/qa_report.html"',
    'NAME = "ops.sqlite"',
])
def test_the_check_finds_hand_made_paths(tmp_path, code):
    f = REPO / "tests" / f".layout_probe_{abs(hash(code))}.py"
    try:
        f.write_text(code + "\n")
        assert spelled_paths(f)
    finally:
        f.unlink(missing_ok=True)


def test_words_and_docstrings_are_not_paths(tmp_path):
    f = REPO / "tests" / ".layout_probe_words.py"
    try:
        f.write_text('"""Writes indexes/tiles.parquet."""\n'
                     'summary = {"chips": 1, "runs": 2}\nstage = "ais"\n'
                     'desc = "chips"\n')
        assert spelled_paths(f) == []
    finally:
        f.unlink(missing_ok=True)


def test_layout_paths():
    lay = DatasetLayout(Path("/data/ds"))
    assert lay.index == Path("/data/ds/indexes/tiles.parquet")
    assert lay.footprints("20260101") == Path("/data/ds/indexes/tiles_20260101.geojson")
    assert lay.cube == Path("/data/ds/chips.zarr") and lay.ops_db == Path("/data/ds/ops.sqlite")
    assert DatasetLayout(Path("/data/ds"), Path("/var/ops.db")).ops_db == Path("/var/ops.db")
    assert DatasetLayout(Path()).ais_observations == Path("indexes/ais_observations.parquet")
    assert lay.ais_day(pd.Timestamp("2026-01-02T23:30", tz="Europe/Madrid")) == \
        Path("/data/ds/ais/20260102")
    assert lay.ais_overpass("20260102", "30STE").name == "ais_overpass_30STE.parquet"
    assert lay.ais_overpass("20260102", None).name == DatasetLayout.AIS_OUTSIDE
    assert lay.run_ais("r1", dry_run=True) == Path("/data/ds/ais/runs/dry-run-r1.parquet")
    assert lay.chip_stem("train", 235000001, pd.Timestamp("2026-01-02"), "0" * 16) == \
        Path("/data/ds/chips/train/235000001/20260102/0000000000000000")
    with pytest.raises(AttributeError):
        lay.root = Path("/elsewhere")  # type: ignore[misc]
