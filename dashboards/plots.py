"""The dashboard's plots: the footprints map (HoloViews on Bokeh, Web Mercator, basemap
tiles optional) and the overpass schedule timeline (Bokeh). Pure functions of DataFrames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from s2xr.config import Config

log = logging.getLogger(__name__)

WEB_MERCATOR = "EPSG:3857"
STATUS_COLORS = {"tile": "#6c757d", "world": "#17a2b8", "passed": "#28a745",
                 "rejected": "#dc3545"}
SELECTED_SOURCE = "s2xr-selected-chip"  # the name of the outline's Bokeh source
WINDOW_COLORS = {"planned": "#6c757d", "captured": "#17a2b8", "queued": "#ffc107",
                 "chipped": "#28a745", "missed": "#dc3545", "scheduled": "#6c757d"}


# ------------------------------------------------------------------------------ map
def _polygons_3857(geoms: gpd.GeoSeries) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for g in geoms.to_crs(WEB_MERCATOR):
        if g is None or g.is_empty:
            out.append((np.array([]), np.array([])))
            continue
        parts = list(getattr(g, "geoms", [g]))
        xs, ys = [], []
        for k, part in enumerate(parts):  # NaN separates the parts of a MultiPolygon
            x, y = part.exterior.xy
            if k:
                xs.append([np.nan])
                ys.append([np.nan])
            xs.append(np.asarray(x))
            ys.append(np.asarray(y))
        out.append((np.concatenate(xs), np.concatenate(ys)))
    return out


def tile_ids_of(cfg: Config, index: pd.DataFrame, schedule: pd.DataFrame,
                world: dict[str, Any] | None) -> list[str]:
    """Tiles worth outlining: the config's, the schedule's, the index's and the world's."""
    tiles = set(cfg.planning.tiles)
    for frame in (index, schedule):
        if len(frame) and "tile_id" in frame:
            tiles |= {str(t) for t in frame["tile_id"].dropna().unique()}
    if world:
        tiles.add(str(world.get("tile", cfg.demo.tile)))
    return sorted(t for t in tiles if t)


def world_window_geometry(world: dict[str, Any] | None, cfg: Config) -> Any:
    """The embedded world's rendered window (lon/lat polygon) or None."""
    if not world:
        return None
    from shapely.geometry import box

    from s2xr.demo import window_geobox

    try:
        gbox = window_geobox(cfg.demo)
        x0, y0, x1, y1 = gbox.boundingbox
        return gpd.GeoSeries([box(x0, y0, x1, y1)], crs=f"EPSG:{gbox.crs.epsg}").to_crs(
            4326).iloc[0]
    except Exception:  # a world built with another DemoConfig: no window outline
        return None


def _bokeh_backend() -> None:
    import holoviews as hv

    if "bokeh" not in hv.Store.renderers:
        import holoviews.plotting.bokeh  # registers the backend
    hv.Store.set_current_backend("bokeh")


def _layer(frame: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    data = []
    for (x, y), r in zip(_polygons_3857(frame.geometry), frame.itertuples(), strict=True):
        if len(x):
            data.append({"x": x, "y": y, "kind": r.kind, "label": r.label,
                         "chip_id": r.chip_id, "mmsi": r.mmsi})
    return data


def _extent(data: list[dict[str, Any]]) -> tuple[float, float, float, float] | None:
    if not data:
        return None
    xs = np.concatenate([d["x"][np.isfinite(d["x"])] for d in data])
    ys = np.concatenate([d["y"][np.isfinite(d["y"])] for d in data])
    pad = max(xs.max() - xs.min(), ys.max() - ys.min(), 2000) * 0.08
    return xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad


def chip_clusters(index: gpd.GeoDataFrame, cells: int = 40) -> pd.DataFrame:
    """Chips grouped where their footprints pile up: the map's extent cut into about
    ``cells`` × ``cells`` squares, one row per occupied square — ``x``, ``y`` (mean centre,
    EPSG:3857), ``n``, ``n_passed``, ``size`` (marker px), ``text``: one readable tooltip
    for every chip there (counts, ships, scenes), and ``chip_id``: the chip a click on the
    marker selects (the newest passed one there, else the newest)."""
    cols = ["x", "y", "n", "n_passed", "size", "text", "chip_id"]
    if not len(index):
        return pd.DataFrame(columns=cols)
    c = index.geometry.to_crs(WEB_MERCATOR).centroid
    x, y = c.x.to_numpy(), c.y.to_numpy()
    span = max(np.ptp(x), np.ptp(y), 2560.0)
    cell = span / cells
    df = pd.DataFrame({"x": x, "y": y, "gx": np.floor(x / cell), "gy": np.floor(y / cell),
                       "ok": index["qa_pass"].astype(bool).to_numpy(),
                       "mmsi": index["mmsi"].astype(str).to_numpy(),
                       "scene": index["scene_id"].astype(str).to_numpy(),
                       "chip_id": index["chip_id"].astype(str).to_numpy(),
                       "when": pd.to_datetime(index["scene_datetime"], utc=True).to_numpy()
                       if "scene_datetime" in index else np.zeros(len(index))})
    rows = []
    for _, g in df.groupby(["gx", "gy"], sort=False):
        ships, scenes = g["mmsi"].unique(), g["scene"].unique()
        text = (f"{len(g)} chip(s): {int(g['ok'].sum())} passed, {int((~g['ok']).sum())} "
                f"rejected; {len(ships)} ship(s) ({', '.join(ships[:4])}"
                f"{' …' if len(ships) > 4 else ''}); {len(scenes)} scene(s)")
        pick = g.sort_values(["ok", "when", "chip_id"], ascending=[False, False, True])
        rows.append({"x": g["x"].mean(), "y": g["y"].mean(), "n": len(g),
                     "n_passed": int(g["ok"].sum()), "size": 7 + 2 * np.log2(len(g)),
                     "text": text, "chip_id": pick["chip_id"].iloc[0]})
    return pd.DataFrame(rows, columns=cols)


def footprints_plot(index: gpd.GeoDataFrame, tiles: list[str], *, world_window: Any = None,
                    basemap: str | None = None, max_chips: int = 5000,
                    height: int = 520, scene: dict[str, Any] | None = None) -> Any:
    """HoloViews overlay (Web Mercator, lon/lat axes and grid): the scene (``scene``: a low
    resolution image, :func:`dashboards.scene_image.scene_underlay`), tile outlines, the
    world window and chip footprints (green passed, red rejected) with one marker per pile
    of footprints (:func:`chip_clusters`: its one tooltip names them all), on optional
    basemap tiles (``basemap``: a ``{z}/{x}/{y}`` URL template or an xyzservices name such
    as ``OpenStreetMap.Mapnik``; they need internet, so the default is none). Zoomed to the
    chips (else the world window, else the tiles). A click on a marker selects it (Bokeh's
    tap tool; :func:`map_figure` turns that into a chip)."""
    import holoviews as hv

    from s2xr.grid import tile_footprint

    _bokeh_backend()
    empty = {"chip_id": "", "mmsi": ""}
    tile_rows, tile_geoms = [], []
    for t in tiles:
        try:
            tile_geoms.append(tile_footprint(t))
        except Exception:  # not an MGRS id: no outline
            continue
        tile_rows.append({"kind": "tile", "label": f"tile {t}", **empty})
    layers: dict[str, list[dict[str, Any]]] = {
        "tile": _layer(gpd.GeoDataFrame(tile_rows, geometry=tile_geoms, crs="EPSG:4326"))
        if tile_rows else []}
    layers["world"] = _layer(gpd.GeoDataFrame(
        [{"kind": "world", "label": "embedded world window", **empty}],
        geometry=[world_window], crs="EPSG:4326")) if world_window is not None else []
    chips = index.tail(max_chips) if len(index) else index
    for kind, ok in (("rejected", False), ("passed", True)):
        sub = chips.loc[chips["qa_pass"].astype(bool) == ok] if len(chips) else chips
        layers[kind] = _layer(gpd.GeoDataFrame({
            "kind": kind,
            "label": [f"{m} {'' if n is None or pd.isna(n) else n}".strip() for m, n in
                      zip(sub["mmsi"], sub["ship_name"] if "ship_name" in sub else
                          [None] * len(sub), strict=True)],
            "chip_id": sub["chip_id"].astype(str).to_numpy(),
            "mmsi": sub["mmsi"].astype(str).to_numpy()},
            geometry=sub.geometry.to_numpy(), crs="EPSG:4326")) if len(sub) else []
    style = {"tile": {"fill_alpha": 0.03, "line_dash": "dashed", "line_width": 2},
             "world": {"fill_alpha": 0.08, "line_width": 2},
             "rejected": {"fill_alpha": 0.35, "line_width": 1},
             "passed": {"fill_alpha": 0.45, "line_width": 1}}
    names = {"tile": "MGRS tile", "world": "embedded world", "rejected": "chip rejected",
             "passed": "chip passed"}
    vdims = ["kind", "label", "chip_id", "mmsi"]
    elements = []
    if scene is not None:
        elements.append(hv.RGB(scene["rgb"], bounds=scene["bounds"],
                               label=f"scene {scene['scene_id']}"))
    for kind, data in layers.items():
        el = hv.Polygons(data, kdims=["x", "y"], vdims=vdims, label=names[kind]).opts(
            color=STATUS_COLORS[kind], line_color=STATUS_COLORS[kind], tools=[],
            show_legend=True,
            **style[kind])
        elements.append(el)
    clusters = chip_clusters(chips)
    if len(clusters):  # hover here only: one tooltip for a pile of footprints
        elements.append(hv.Points(clusters, kdims=["x", "y"],
                                  vdims=["text", "n", "n_passed", "size", "chip_id"],
                                  label="chips here (hover, click)").opts(
            size="size", color="#ffffff", line_color="#0072b5", line_width=2, alpha=0.9,
            tools=["hover", "tap"], hover_tooltips=[("chips", "@text")],
            nonselection_alpha=0.9, selection_color="#ffc107"))
    extent = (_extent(layers["passed"] + layers["rejected"] + layers["world"]) or
              _extent(layers["tile"]))
    overlay = hv.Overlay(elements)
    if basemap:
        overlay = basemap_tiles(basemap) * overlay
    from bokeh.models import MercatorTickFormatter

    opts: dict[str, Any] = {
        "responsive": True, "min_height": height, "data_aspect": 1,  # metres are square
        "xlabel": "longitude", "ylabel": "latitude", "show_grid": True,
        "xformatter": MercatorTickFormatter(dimension="lon"),
        "yformatter": MercatorTickFormatter(dimension="lat"),
        "legend_position": "top_left", "active_tools": ["pan", "wheel_zoom", "tap"],
        "title": "Tile and chip footprints" + ("" if basemap else " (no basemap)")}
    if extent is not None:
        opts.update(xlim=(extent[0], extent[2]), ylim=(extent[1], extent[3]))
    return overlay.opts(**opts)


def selected_xy(index: gpd.GeoDataFrame, chip_id: str) -> dict[str, list[list[float]]]:
    """The outline of chip ``chip_id`` in EPSG:3857 as Bokeh ``patches`` columns ``xs``,
    ``ys`` (empty when none is selected or it is not in ``index``)."""
    rows = index.loc[index["chip_id"].astype(str) == chip_id] if chip_id and len(index) \
        else index.iloc[:0]
    outlines = _polygons_3857(rows.geometry) if len(rows) else []
    return {"xs": [x.tolist() for x, _ in outlines], "ys": [y.tolist() for _, y in outlines]}


@dataclass
class MapFigure:
    """The map as a Bokeh figure with the handles the dashboard needs: ``markers`` (the
    :func:`chip_clusters` source: ``markers.selected.indices`` is what a click picked, its
    ``chip_id`` column the chip each marker stands for) and ``selected`` (the outline of
    the selected chip: set its ``data`` to :func:`selected_xy`; the zoom stays)."""

    figure: Any
    markers: Any
    selected: Any


def map_figure(overlay: Any, index: gpd.GeoDataFrame, chip_id: str = "") -> MapFigure:
    """Render :func:`footprints_plot` to Bokeh (computes the figure) and add the selected
    chip's outline over everything, in the legend as "selected chip"."""
    import holoviews as hv
    from bokeh.models import ColumnDataSource

    fig = hv.render(overlay, backend="bokeh")
    marker_layer = next((r for r in fig.renderers  # (a basemap's TileRenderer has none)
                         if "chip_id" in getattr(getattr(r, "data_source", None), "data", {})),
                        None)
    markers = marker_layer.data_source if marker_layer is not None else None
    for tool in fig.tools:  # a click picks a marker, never a footprint under it
        if type(tool).__name__ == "TapTool" and marker_layer is not None:
            tool.renderers = [marker_layer]
    selected = ColumnDataSource(selected_xy(index, chip_id), name=SELECTED_SOURCE)
    kw = {"legend_label": "selected chip"} if fig.legend else {}
    fig.patches("xs", "ys", source=selected, fill_alpha=0.0, line_color="#ffc107",
                line_width=4, **kw)
    return MapFigure(fig, markers, selected)


def _shape(fig: Any) -> list[str]:
    return [f"{type(r).__name__}:{type(getattr(r, 'glyph', None)).__name__}"
            for r in fig.renderers]


def refresh_map(shown: MapFigure, new: MapFigure) -> bool:
    """Put ``new``'s data into the figure already ``shown`` when both have the same layers
    (data sources and legend labels updated in place: the browser keeps its zoom) → True;
    False when the layers differ (e.g. a basemap added): show ``new`` instead."""
    if _shape(shown.figure) != _shape(new.figure):
        return False
    for old_r, new_r in zip(shown.figure.renderers, new.figure.renderers, strict=True):
        if hasattr(old_r, "data_source"):
            old_r.data_source.data = dict(new_r.data_source.data)
    for old_l, new_l in zip(shown.figure.legend, new.figure.legend, strict=False):
        for old_i, new_i in zip(old_l.items, new_l.items, strict=False):
            old_i.label = new_i.label
    return True


def basemap_tiles(basemap: str) -> Any:
    """HoloViews tiles from a ``{z}/{x}/{y}`` URL template or an xyzservices provider name
    (``OpenStreetMap.Mapnik``, ``Esri.WorldImagery``)."""
    import holoviews as hv

    if "{" in basemap:
        url = basemap
    else:
        import xyzservices.providers as xyz

        provider: Any = xyz
        for part in basemap.split("."):
            provider = provider[part]
        url = provider.build_url(scale_factor="")
    for a, b in (("{x}", "{X}"), ("{y}", "{Y}"), ("{z}", "{Z}")):
        url = url.replace(a, b)
    return hv.Tiles(url, name="basemap")


# ------------------------------------------------------------------------------ schedule
def schedule_plot(frame: pd.DataFrame, *, height: int = 320) -> Any:
    """A Bokeh timeline: one row per tile · satellite, a bar per window (coloured by its
    ops DB state) and a marker at its centre (windows last minutes, the horizon days)."""
    from bokeh.models import ColumnDataSource, HoverTool, Range1d
    from bokeh.plotting import figure

    labels = sorted(frame["label"].unique()) if len(frame) else ["(no schedule yet)"]
    # explicit x range: an empty figure's auto range is NaN ("could not set initial ranges")
    if len(frame):
        lo = pd.to_datetime(frame["start_time_utc"], utc=True).min().tz_localize(None)
        hi = pd.to_datetime(frame["end_time_utc"], utc=True).max().tz_localize(None)
    else:
        lo = pd.Timestamp.now("UTC").floor("D").tz_localize(None)
        hi = lo + pd.Timedelta(days=1)
    pad = max(hi - lo, pd.Timedelta(hours=1)) * 0.03
    p = figure(y_range=labels, x_range=Range1d(lo - pad, hi + pad), x_axis_type="datetime",
               height=height,
               sizing_mode="stretch_width", title="Overpass schedule (capture windows)",
               tools="xpan,xwheel_zoom,reset,save")
    if len(frame):
        start = pd.to_datetime(frame["start_time_utc"], utc=True).dt.tz_localize(None)
        end = pd.to_datetime(frame["end_time_utc"], utc=True).dt.tz_localize(None)
        src = ColumnDataSource({
            "label": frame["label"].tolist(), "start": start, "end": end,
            "centre": start + (end - start) / 2, "state": frame["state"].tolist(),
            "color": [WINDOW_COLORS.get(s, "#6c757d") for s in frame["state"]],
            "source": frame.get("source", pd.Series([""] * len(frame))).astype(str).tolist(),
            "start_s": start.dt.strftime("%Y-%m-%d %H:%M:%S").tolist(),
            "end_s": end.dt.strftime("%H:%M:%S").tolist()})
        p.hbar(y="label", left="start", right="end", height=0.5, color="color", source=src)
        r = p.scatter(x="centre", y="label", size=9, color="color", source=src,
                      legend_field="state")
        p.add_tools(HoverTool(renderers=[r], tooltips=[
            ("window", "@label"), ("UTC", "@start_s → @end_s"), ("state", "@state"),
            ("source", "@source")]))
        p.legend.orientation = "horizontal"
        p.add_layout(p.legend[0], "above")
    p.xaxis.axis_label = "UTC"
    return p
