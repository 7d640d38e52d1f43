"""Quicklooks and one chip's detail: the gallery component (click → ``selected``), the
chip's RGB / NIR / SCL renderings from the Zarr cube, its QA numbers, JSON metadata and
files, and the Panel layout of the detail view.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import panel as pn
import param
from panel.custom import JSComponent
from PIL import Image

from dashboards.views import chip_stem
from s2xr.store.layout import DatasetLayout
from s2xr.store.objects import has_zarr

log = logging.getLogger(__name__)

# SCL class colours (ESA's usual legend)
SCL_COLORS = np.array([
    (0, 0, 0), (255, 0, 0), (47, 47, 47), (100, 50, 0), (0, 160, 0), (255, 230, 90),
    (0, 0, 255), (128, 128, 128), (192, 192, 192), (255, 255, 255), (100, 200, 255),
    (255, 150, 255)], dtype=np.uint8)
SCL_NAMES = ("nodata", "saturated", "dark/shadow", "cloud shadow", "vegetation",
             "not vegetated", "water", "unclassified", "cloud medium", "cloud high",
             "thin cirrus", "snow/ice")
QA_FIELDS = ("qa_pass", "qa_reason", "qa_cloud_frac", "qa_land_frac", "qa_water_frac",
             "qa_ndwi_water_frac", "qa_chip_cloud_frac", "valid_frac", "dt_seconds",
             "uncertainty_m", "position_method", "n_ships")


# ------------------------------------------------------------------------------ gallery
class ThumbnailCache:
    """Small JPEG data URIs of quicklooks, keyed by path and mtime (least recently used
    evicted). One per process, shared by the sessions (``pn.state.as_cached``)."""

    def __init__(self, maxsize: int = 2048, size: int = 128) -> None:
        self.maxsize = maxsize
        self.size = size
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple[str, float], str] = OrderedDict()

    def get(self, path: Path) -> str | None:
        """The thumbnail of ``path`` (None if it is missing or not an image)."""
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            return None
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        try:
            img = Image.open(path)
            img.thumbnail((self.size, self.size))
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="JPEG", quality=85)
        except (OSError, ValueError):
            return None
        uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        with self._lock:
            self._data[key] = uri
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return uri


def gallery_items(root: Path, index: pd.DataFrame, n: int = 48,
                  thumbs: ThumbnailCache | None = None) -> list[dict[str, str]]:
    """Quicklooks of the newest ``n`` passed chips → [{chip_id, src, caption, title}]."""
    thumbs = thumbs or ThumbnailCache()
    if index.empty:
        return []
    ok = index.loc[index["qa_pass"].astype(bool) & index["path"].notna()]
    ok = ok.sort_values(["scene_datetime", "chip_id"], ascending=[False, True]).head(n)
    out = []
    for r in ok.itertuples():
        src = thumbs.get(chip_stem(root, r.path).with_suffix(".jpg"))
        if src is None:
            continue
        name = getattr(r, "ship_name", None)
        name = "" if name is None or pd.isna(name) else str(name)
        when = pd.Timestamp(r.scene_datetime)
        out.append({"chip_id": str(r.chip_id), "src": src,
                    "caption": f"{r.mmsi} {name}".strip()[:28],
                    "title": f"{r.chip_id} · {r.mmsi} {name} · {when:%Y-%m-%d %H:%M} UTC"})
    return out


class QuicklookGallery(JSComponent):
    """A grid of quicklooks; clicking one sets ``selected`` to its chip_id."""

    items = param.List(default=[], doc="[{chip_id, src, caption, title}]")
    selected = param.String(default="")

    _esm = """
    export function render({ model }) {
      const grid = document.createElement('div');
      grid.className = 'qg-grid';
      function draw() {
        grid.replaceChildren();
        if (!model.items.length) {
          const p = document.createElement('p');
          p.className = 'qg-empty';
          p.textContent = 'No chips yet: start a run.';
          grid.appendChild(p);
        }
        for (const it of model.items) {
          const fig = document.createElement('figure');
          fig.className = 'qg-item' + (it.chip_id === model.selected ? ' qg-sel' : '');
          fig.dataset.chipId = it.chip_id;
          fig.title = it.title;
          const img = document.createElement('img');
          img.src = it.src;
          img.alt = it.caption;
          const cap = document.createElement('figcaption');
          cap.textContent = it.caption;
          fig.append(img, cap);
          fig.addEventListener('click', () => { model.selected = it.chip_id; });
          grid.appendChild(fig);
        }
      }
      draw();
      model.on('items', draw);
      model.on('selected', draw);
      return grid;
    }
    """

    _stylesheets: ClassVar[list[str]] = ["""
    .qg-grid { display: flex; flex-wrap: wrap; gap: 6px; }
    .qg-item { margin: 0; cursor: pointer; width: 132px; font: 11px sans-serif;
               border: 2px solid transparent; border-radius: 4px; }
    .qg-item img { width: 128px; height: 128px; display: block; }
    .qg-item figcaption { overflow: hidden; white-space: nowrap;
                          text-overflow: ellipsis; padding: 1px 2px; }
    .qg-item:hover { border-color: #0072b5; }
    .qg-sel { border-color: #e8590c; }
    .qg-empty { color: #666; font: 14px sans-serif; }
    """]



# ------------------------------------------------------------------------------ detail
def _png_uri(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def stretch(band: np.ndarray) -> np.ndarray:
    """uint8 grey image of one band, 2–98 % stretch, NaN → black."""
    ok = np.isfinite(band)
    out = np.zeros(band.shape, np.uint8)
    if ok.any():
        lo, hi = np.percentile(band[ok], (2, 98))
        out = np.where(ok, np.clip((band - lo) / max(hi - lo, 1e-6), 0, 1) * 255, 0)
    return out.astype(np.uint8)


def scl_rgb(scl: np.ndarray) -> np.ndarray:
    """uint8 (y, x, 3) SCL classes in their usual colours (unknown classes black)."""
    s = np.asarray(scl).astype(np.int64)
    s = np.where((s >= 0) & (s < len(SCL_COLORS)), s, 0)
    return SCL_COLORS[s]


@dataclass
class ChipImages:
    """The three renderings of one chip (PNG data URIs) and its SCL class counts."""

    rgb: str
    nir: str
    scl: str
    scl_counts: dict[str, int]


def chip_images(root: Path, chip_id: str) -> ChipImages | None:
    """RGB, NIR and SCL of a stored chip, read from the Zarr cube (None if not there)."""
    from s2xr.store.cube import open_chips
    from s2xr.store.files import rgb_quicklook

    cube = DatasetLayout(root).cube
    if not has_zarr(cube):
        return None
    ds = open_chips(cube)
    ids = [str(c) for c in ds["chip_id"].values]  # object or StringDType
    hit = [k for k, c in enumerate(ids) if c == chip_id]
    if not len(hit):
        return None
    one = ds.isel(chip=int(hit[0]))
    bands = [str(b) for b in ds["band"].values]
    refl = np.asarray(one["reflectance"].values, dtype=np.float32)
    scl = np.asarray(one["scl"].values)
    nir = refl[bands.index("nir")] if "nir" in bands else refl[-1]
    counts = {SCL_NAMES[int(k)] if int(k) < len(SCL_NAMES) else str(k): int(v)
              for k, v in zip(*np.unique(scl, return_counts=True), strict=True)}
    return ChipImages(rgb=_png_uri(rgb_quicklook(refl, bands)), nir=_png_uri(stretch(nir)),
                      scl=_png_uri(scl_rgb(scl)), scl_counts=counts)


def chip_files(root: Path, row: pd.Series | Any) -> dict[str, Path]:
    """The chip's files that exist: tif, jpg, json, geojson."""
    rel = row.get("path") if hasattr(row, "get") else getattr(row, "path", None)
    if rel is None or (isinstance(rel, float) and np.isnan(rel)):
        return {}
    stem = chip_stem(root, str(rel))
    out = {}
    for ext in (".tif", ".jpg", ".json", ".geojson"):
        p = stem.with_suffix(ext)
        if p.is_file():
            out[ext[1:]] = p
    return out


def qa_table(row: pd.Series) -> pd.DataFrame:
    """QA numbers of one index row as a two-column frame."""
    vals = []
    for k in QA_FIELDS:
        if k in row:
            v = row[k]
            if isinstance(v, float | np.floating):
                v = round(float(v), 4)
            vals.append((k, v))
    return pd.DataFrame(vals, columns=["field", "value"])


def chip_metadata(files: dict[str, Path]) -> dict[str, Any]:
    """The chip's JSON sidecar (provenance, QA, labels), or {}."""
    p = files.get("json")
    if p is None:
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _verdict(passed: bool) -> str:
    color, word = ("#28a745", "passed") if passed else ("#dc3545", "rejected")
    return f"<b style='color:{color}'>{word}</b>"


def detail_layout(root: Path, chip_id: str, row: pd.Series,
                  images: ChipImages | None) -> list[Any]:
    """The chip detail view: header (ship, time, tile, scene, split, verdict), RGB / NIR /
    SCL, SCL class counts, QA numbers, download buttons and paths of its files, and its
    JSON metadata."""
    files = chip_files(root, row)
    meta = chip_metadata(files)
    name = row.get("ship_name")
    name = "" if name is None or pd.isna(name) else html.escape(str(name))
    when = pd.Timestamp(row["scene_datetime"])
    head = pn.pane.Markdown(
        f"#### Chip `{chip_id}`\nMMSI **{row['mmsi']}** {name} · "
        f"{when:%Y-%m-%d %H:%M:%S} UTC · tile {row.get('tile_id')} · scene "
        f"`{row.get('scene_id')}` · split {row.get('split')} · "
        f"{_verdict(bool(row['qa_pass']))}", css_classes=["s2xr-detail-head"])
    out: list[Any] = [head]
    if images is not None:
        cells = "".join(
            f"<figure style='margin:0 4px 0 0'><img src='{src}' width='128' height='128' "
            f"alt='{lab}'><figcaption style='font-size:11px'>{lab}</figcaption></figure>"
            for lab, src in (("RGB", images.rgb), ("NIR", images.nir), ("SCL", images.scl)))
        out.append(pn.pane.HTML(f"<div style='display:flex'>{cells}</div>",
                                css_classes=["s2xr-detail-images"]))
        top = sorted(images.scl_counts.items(), key=lambda kv: -kv[1])[:4]
        out.append(pn.pane.Markdown("SCL pixels: " + ", ".join(f"{k} {v}" for k, v in top),
                                    margin=(0, 10)))
    else:
        out.append(pn.pane.Markdown("*No pixels: the chip is not in the cube (rejected by "
                                    "the gate, or pruned).*"))
    out.append(pn.pane.DataFrame(qa_table(row), index=False, css_classes=["s2xr-qa"]))
    if files:
        out.append(pn.Row(*[pn.widgets.FileDownload(file=str(p), filename=p.name, label=ext,
                                                    color="light", width=80)
                            for ext, p in files.items()]))
        out.append(pn.pane.Markdown("Files: " + " · ".join(
            f"`{html.escape(str(p))}`" for p in files.values()), margin=(0, 10)))
    if meta:
        out.append(pn.pane.JSON(meta, depth=1, name="metadata", height=260,
                                sizing_mode="stretch_width"))
    return out
