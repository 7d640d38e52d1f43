"""Oriented ship boxes per chip from AIS at sensing time (pure NumPy/shapely, no I/O).

Every ship positioned at an item's sensing time (not only the one a chip is centred on) is
labelled in every chip of that item whose footprint it touches. A ship with static data
(AIS dimensions A, B, C, D = to_bow, to_stern, to_port, to_starboard) and a heading gets an
oriented box: length A + B, beam C + D, placed around the GPS antenna so that the bow lies A
metres ahead of it and the starboard side D metres to its right. A ship without dimensions
(or without any heading) gets a point label at its antenna with ``label_flag`` saying why.

Headings: AIS TrueHeading of the fix nearest the sensing time, else its COG (degrees from
true north). The box is drawn in the chip's UTM grid, so the true heading is turned into a
grid bearing (meridian convergence, up to a few degrees away from the central meridian).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import shapely
from pyproj import Geod, Transformer

from s2xr.store.labels import LABEL_COLUMNS, SHIP_CLASSES, ship_class

__all__ = ["LABEL_COLUMNS", "SHIP_CLASSES", "label_chips", "ship_class", "ship_states"]

log = logging.getLogger(__name__)
GEOD = Geod(ellps="WGS84")

_DIMS = ("to_bow", "to_stern", "to_port", "to_starboard")


def ship_states(positioned: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """``positioned`` (one row per ship and item: mmsi, item_id, lat, lon at sensing time,
    ais_time, method, gap_s, uncertainty_m, static columns; from the chip job's
    ``position_targets``) + ``heading_deg``, ``heading_source`` ('heading', 'cog' or
    'none') and ``sog`` taken from the AIS fix nearest the sensing time (``ais_time``; for
    points without time, their own row). ``points``: the AIS points (mmsi, time, heading,
    cog, sog, row order as used for ``positioned['row']``). Pure; rows without a position
    are dropped."""
    out = positioned.loc[positioned["lat"].notna() & positioned["lon"].notna()].copy()
    out = out.reset_index(drop=True)
    cols = [c for c in ("heading", "cog", "sog") if c in points]
    fix = pd.DataFrame({"mmsi": points["mmsi"].to_numpy().astype("int64"),
                        "ais_time": pd.to_datetime(points["time"], utc=True).to_numpy(),
                        **{c: pd.to_numeric(points[c], errors="coerce").to_numpy(float)
                           for c in cols}})
    fix["ais_time"] = pd.to_datetime(fix["ais_time"], utc=True).astype("datetime64[ns, UTC]")
    # prefer a fix that has a heading when several share a time
    fix = fix.sort_values([c for c in ("heading", "cog") if c in fix], na_position="first",
                          kind="stable").drop_duplicates(["mmsi", "ais_time"], keep="last")
    when = out["ais_time"] if "ais_time" in out else pd.Series(pd.NaT, index=out.index)
    key = pd.DataFrame({"mmsi": out["mmsi"].to_numpy().astype("int64"),
                        "ais_time": pd.to_datetime(when, utc=True).astype(
                            "datetime64[ns, UTC]").array})
    got = key.merge(fix, on=["mmsi", "ais_time"], how="left")
    if "row" in out and (out.get("method") == "static").any():
        static = (out["method"] == "static").to_numpy()
        rows = out.loc[static, "row"].to_numpy().astype(int)
        for c in cols:
            got.loc[static, c] = pd.to_numeric(points[c], errors="coerce").to_numpy(float)[rows]
    heading = got["heading"].to_numpy(float) if "heading" in got else np.full(len(out), np.nan)
    cog = got["cog"].to_numpy(float) if "cog" in got else np.full(len(out), np.nan)
    ok_h = np.isfinite(heading) & (heading >= 0) & (heading < 360)
    ok_c = np.isfinite(cog) & (cog >= 0) & (cog < 360)
    out["heading_deg"] = np.where(ok_h, heading, np.where(ok_c, cog, np.nan))
    out["heading_source"] = np.where(ok_h, "heading", np.where(ok_c, "cog", "none"))
    out["sog"] = got["sog"].to_numpy(float) if "sog" in got else np.nan
    return out


def grid_heading(lon: np.ndarray, lat: np.ndarray, heading: np.ndarray,
                 epsg: int) -> np.ndarray:
    """True headings (deg from true north) → bearings in the ``epsg`` grid (deg clockwise
    from grid north), by projecting a 100 m geodesic step. NaN stays NaN. Pure."""
    heading = np.asarray(heading, float)
    ok = np.isfinite(heading)
    out = np.full(heading.shape, np.nan)
    if not ok.any():
        return out
    lon2, lat2, _ = GEOD.fwd(lon[ok], lat[ok], heading[ok], np.full(ok.sum(), 100.0))
    to = Transformer.from_crs(4326, int(epsg), always_xy=True)
    x1, y1 = to.transform(lon[ok], lat[ok])
    x2, y2 = to.transform(lon2, lat2)
    out[ok] = np.degrees(np.arctan2(x2 - x1, y2 - y1)) % 360.0
    return out


def box_corners(x: np.ndarray, y: np.ndarray, heading: np.ndarray, to_bow: np.ndarray,
                to_stern: np.ndarray, to_port: np.ndarray, to_starboard: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cx, cy, corners) of hulls around antennas at (x, y) (metres, north-up CRS),
    ``heading`` in degrees clockwise from grid north. ``corners``: (n, 4, 2) x/y of the
    bow-port, bow-starboard, stern-starboard and stern-port corners (clockwise on a map)."""
    h = np.deg2rad(np.asarray(heading, float))
    bow = np.stack([np.sin(h), np.cos(h)], -1)  # unit vector towards the bow
    stb = np.stack([np.cos(h), -np.sin(h)], -1)  # unit vector towards starboard
    ant = np.stack([x, y], -1).astype(float)
    along = np.stack([to_bow, to_bow, -np.asarray(to_stern), -np.asarray(to_stern)], -1)
    across = np.stack([-np.asarray(to_port), to_starboard, to_starboard,
                       -np.asarray(to_port)], -1)
    corners = (ant[:, None, :] + along[..., None] * bow[:, None, :] +
               across[..., None] * stb[:, None, :])
    centre = corners.mean(axis=1)
    return centre[:, 0], centre[:, 1], corners


def _chip_labels(chips: pd.DataFrame, ships: pd.DataFrame, epsg: int, size: int,
                 res: float) -> list[pd.DataFrame]:
    """Label rows for the chips of one item (all in ``epsg``)."""
    lon = ships["lon"].to_numpy(float)
    lat = ships["lat"].to_numpy(float)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    dims = np.stack([pd.to_numeric(ships[c], errors="coerce").to_numpy(float)
                     if c in ships else np.full(len(ships), np.nan) for c in _DIMS], -1)
    has_dims = (np.isfinite(dims).all(axis=1) & (dims >= 0).all(axis=1) &
                (dims[:, 0] + dims[:, 1] > 0) & (dims[:, 2] + dims[:, 3] > 0))
    gh = grid_heading(lon, lat, ships["heading_deg"].to_numpy(float), epsg)
    is_box = has_dims & np.isfinite(gh)
    flag = np.where(is_box, np.array(None, dtype=object),
                    np.where(~has_dims, "no_static_dimensions", "no_heading"))
    d = np.where(is_box[:, None], dims, 0.0)
    cx, cy, corners = box_corners(x, y, np.where(is_box, gh, 0.0), *d.T)
    polys = shapely.polygons(corners)
    polys = np.where(is_box, polys, shapely.points(x, y))
    stype = ships["ship_type"] if "ship_type" in ships else pd.Series(pd.NA, index=ships.index)
    classes = np.array([ship_class(t) for t in stype])
    out = []
    size_m = size * res
    reach = float(np.nanmax(np.where(is_box, d.max(axis=1) * 2, 0.0), initial=0.0)) + res
    for ch in chips.itertuples():
        x0, y1 = float(ch.x_left), float(ch.y_top)
        square = shapely.box(x0, y1 - size_m, x0 + size_m, y1)
        near = ((x > x0 - reach) & (x < x0 + size_m + reach) & (y < y1 + reach) &
                (y > y1 - size_m - reach))
        k = np.flatnonzero(near)
        if k.size == 0:
            continue
        inter = shapely.intersection(polys[k], square)
        keep = np.where(is_box[k], shapely.area(inter) > 0,
                        shapely.contains_properly(square, polys[k]))
        k = k[keep]
        if k.size == 0:
            continue
        target = (ships["mmsi"].to_numpy()[k] == ch.mmsi)
        k = k[np.argsort(~target, kind="stable")]  # the chip's own ship is instance 1
        cpx = np.stack([(corners[k, :, 0] - x0) / res, (y1 - corners[k, :, 1]) / res], -1)
        inside = ((cpx >= 0) & (cpx <= size)).all(axis=(1, 2))
        lab = pd.DataFrame({
            "chip_id": ch.chip_id, "instance": np.arange(1, k.size + 1),
            "mmsi": ships["mmsi"].to_numpy()[k].astype("int64"),
            "is_target": ships["mmsi"].to_numpy()[k] == ch.mmsi,
            "kind": np.where(is_box[k], "box", "point"), "label_flag": flag[k],
            "epsg": epsg, "x": x[k], "y": y[k], "lon": lon[k], "lat": lat[k],
            "col": (x[k] - x0) / res, "row": (y1 - y[k]) / res,
            "heading_deg": ships["heading_deg"].to_numpy(float)[k],
            "heading_source": ships["heading_source"].to_numpy()[k],
            "grid_heading_deg": gh[k],
            "length_m": np.where(is_box[k], d[k, 0] + d[k, 1], np.nan),
            "beam_m": np.where(is_box[k], d[k, 2] + d[k, 3], np.nan),
            **{c: dims[k, j] for j, c in enumerate(_DIMS)},
            "cx": np.where(is_box[k], cx[k], x[k]), "cy": np.where(is_box[k], cy[k], y[k]),
            "cx_px": np.where(is_box[k], (cx[k] - x0) / res, (x[k] - x0) / res),
            "cy_px": np.where(is_box[k], (y1 - cy[k]) / res, (y1 - y[k]) / res),
            "length_px": np.where(is_box[k], (d[k, 0] + d[k, 1]) / res, np.nan),
            "beam_px": np.where(is_box[k], (d[k, 2] + d[k, 3]) / res, np.nan),
            "corners_px": [list(c.ravel()) if b else None
                           for c, b in zip(cpx, is_box[k], strict=True)],
            "polygon_wkt": shapely.to_wkt(polys[k], rounding_precision=3),
            "truncated": np.where(is_box[k], ~inside, False),
            "ship_type": pd.array(pd.to_numeric(stype.to_numpy()[k], errors="coerce"),
                                  dtype="Int64"),
            "ship_class": classes[k],
            "sog": ships["sog"].to_numpy(float)[k] if "sog" in ships else np.nan,
            "position_method": ships["method"].to_numpy()[k] if "method" in ships else None,
            "dt_seconds": ships["gap_s"].to_numpy(float)[k] if "gap_s" in ships else np.nan,
            "uncertainty_m": ships["uncertainty_m"].to_numpy(float)[k]
            if "uncertainty_m" in ships else np.nan,
        })
        out.append(lab)
    return out


def label_chips(plan: pd.DataFrame, ships: pd.DataFrame, *, size: int = 256,
                res: float = 10.0) -> pd.DataFrame:
    """One row per (chip, ship) for every ship touching each chip's footprint. Pure.

    ``plan``: chip_id, mmsi, item_id, epsg, x_left, y_top (from
    :func:`~s2xr.chips.plan_chips`). ``ships``: :func:`ship_states` output (mmsi, item_id,
    lat, lon, heading_deg, heading_source, sog, static dimensions, method, gap_s,
    uncertainty_m, ship_type). Returns :data:`LABEL_COLUMNS`:

    * ``instance`` 1..n within the chip (the chip's own ship, ``is_target``, first) — the
      value of that ship in the ``ship_mask``;
    * ``kind`` 'box' or 'point' (``label_flag``: 'no_static_dimensions' / 'no_heading');
    * antenna ``x``, ``y`` (chip CRS), ``col``, ``row`` (pixels from the chip's top-left
      corner, continuous: pixel (r, c) spans [r, r+1) × [c, c+1));
    * box centre ``cx``, ``cy`` (CRS) and ``cx_px``, ``cy_px``; ``length_m``/``beam_m``
      and ``length_px``/``beam_px``; ``grid_heading_deg`` (the box's orientation: clockwise
      from grid north = image up); ``corners_px`` (8 floats c1, r1, …, c4, r4: bow-port,
      bow-starboard, stern-starboard, stern-port); ``polygon_wkt`` (chip CRS);
      ``truncated`` (the box leaves the chip).
    """
    if plan.empty or ships.empty:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    if "method" in ships:  # a ship tracked in time is not labelled again from its static points
        static = (ships["method"] == "static").to_numpy()
        timed = set(zip(ships.loc[~static, "item_id"], ships.loc[~static, "mmsi"], strict=True))
        dup = static & np.array([(i, m) in timed for i, m in zip(ships["item_id"],
                                                                  ships["mmsi"], strict=True)])
        ships = ships.loc[~dup]
    by_item = dict(tuple(ships.groupby("item_id", sort=False)))
    frames: list[pd.DataFrame] = []
    for item_id, chips in plan.groupby("item_id", sort=False):
        sh = by_item.get(item_id)
        if sh is None:
            continue
        for epsg, c in chips.groupby("epsg"):
            frames.extend(_chip_labels(c, sh.reset_index(drop=True), int(epsg), size, res))
    if not frames:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[LABEL_COLUMNS]
    log.info("labels: %d ship(s) in %d chip(s) (%d box(es), %d point(s))", len(out),
             out["chip_id"].nunique(), int((out["kind"] == "box").sum()),
             int((out["kind"] == "point").sum()))
    return out
