"""Rasterised ship masks: ``ship_mask(chip, y, x)`` uint8 instance masks from the box labels.

Value 0 is background; value k is the ship whose label has ``instance == k`` in that chip
(``ship_mask > 0`` is the binary ship mask). A pixel belongs to a hull when the hull covers
at least half of it (4×4 sub-samples per pixel) or the hull's centre line (stern to bow)
crosses it — so a ship narrower than a pixel is a line of pixels as long as the ship, not
nothing; a hull that only clips the chip's edge still gets the pixel it covers most. Every
box label inside a chip thus has at least one mask pixel. Where hulls overlap, the one
covering more of the pixel wins. Point labels (no dimensions) are not rasterised.
"""

from __future__ import annotations

import itertools
import logging

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

log = logging.getLogger(__name__)

SUPERSAMPLE = 4
MIN_COVER = 0.5


_BOX_FIELDS = ["col", "row", "grid_heading_deg", "to_bow", "to_stern", "to_port",
               "to_starboard", "instance"]


def _draw_box(mask: np.ndarray, best: np.ndarray, box: np.ndarray, res: float,
              supersample: int, min_cover: float) -> None:
    """Draw one box (a row of :data:`_BOX_FIELDS` values) into ``mask`` in place."""
    col, row, heading, to_bow, to_stern, to_port, to_stb, instance = box
    size = mask.shape[0]
    offs = (np.arange(supersample) + 0.5) / supersample
    g = np.deg2rad(heading)
    bow = (np.sin(g), -np.cos(g))  # (col, row) towards the bow
    stb = (np.cos(g), np.sin(g))  # (col, row) towards starboard
    a, b, c, d = to_bow / res, to_stern / res, to_port / res, to_stb / res
    reach = max(a, b) + max(c, d) + 1
    c0, c1 = max(int(np.floor(col - reach)), 0), min(int(np.ceil(col + reach)), size)
    r0, r1 = max(int(np.floor(row - reach)), 0), min(int(np.ceil(row + reach)), size)
    if c0 >= c1 or r0 >= r1:
        return
    cc = (np.arange(c0, c1)[:, None] + offs[None, :]).ravel()[None, :] - col
    rr = (np.arange(r0, r1)[:, None] + offs[None, :]).ravel()[:, None] - row
    u = cc * bow[0] + rr * bow[1]
    v = cc * stb[0] + rr * stb[1]
    inside = (u <= a) & (u >= -b) & (v <= d) & (v >= -c)
    cover = inside.reshape(r1 - r0, supersample, c1 - c0, supersample).mean(axis=(1, 3))
    take = cover >= min_cover
    n = max(int(np.ceil((a + b) * 8)), 1)  # the centre line, every 1/8 pixel (open ends)
    t = -b + (np.arange(n) + 0.5) * (a + b) / n
    mid = (d - c) / 2
    kc = np.floor(col + t * bow[0] + mid * stb[0]).astype(int) - c0
    kr = np.floor(row + t * bow[1] + mid * stb[1]).astype(int) - r0
    ok = (kc >= 0) & (kc < c1 - c0) & (kr >= 0) & (kr < r1 - r0)
    take[kr[ok], kc[ok]] = True
    if not take.any():
        if cover.max() <= 0:
            return
        take = cover == cover.max()
    score = np.where(take, np.maximum(cover, 1e-3), 0.0)  # centre-line pixels count too
    win_m, win_b = mask[r0:r1, c0:c1], best[r0:r1, c0:c1]
    take &= score > win_b
    win_m[take] = min(int(instance), 255)
    win_b[take] = score[take]


def rasterize_ship_mask(labels: pd.DataFrame, size: int = 256, res: float = 10.0, *,
                        supersample: int = SUPERSAMPLE, min_cover: float = MIN_COVER
                        ) -> np.ndarray:
    """uint8 (y, x) instance mask of one chip from its label rows (columns instance, kind,
    col, row, grid_heading_deg, to_bow, to_stern, to_port, to_starboard; see
    :func:`~s2xr.labels.label_chips`). Pure NumPy."""
    mask = np.zeros((size, size), np.uint8)
    best = np.zeros((size, size), np.float32)
    boxes = labels.loc[labels["kind"] == "box", _BOX_FIELDS].to_numpy(float)
    for box in boxes:
        _draw_box(mask, best, box, res, supersample, min_cover)
    return mask


def rasterize_ship_masks(labels: pd.DataFrame, chip_ids: np.ndarray, size: int = 256,
                         res: float = 10.0) -> np.ndarray:
    """uint8 (chip, y, x) masks for ``chip_ids`` (chips without labels are all 0). Pure."""
    out = np.zeros((len(chip_ids), size, size), np.uint8)
    boxes = labels.loc[labels["kind"] == "box"] if len(labels) else labels
    if boxes.empty:
        return out
    values = boxes[_BOX_FIELDS].to_numpy(float)
    rows = boxes.groupby("chip_id", sort=False).indices
    best = np.zeros((size, size), np.float32)
    for k, cid in enumerate(chip_ids):
        r = rows.get(cid)
        if r is None:
            continue
        best[:] = 0
        for box in values[r]:
            _draw_box(out[k], best, box, res, SUPERSAMPLE, MIN_COVER)
    return out


def attach_ship_mask(chips: xr.Dataset, labels: pd.DataFrame) -> xr.Dataset:
    """``chips`` (chip, y, x dims; chip_id coord; from :func:`~s2xr.chips.cut_chips` or
    :func:`~s2xr.gate.gate_chips`) + ``ship_mask(chip, y, x)`` uint8. Lazy: one Dask task per
    chunk of ``chip`` (the chunks of ``reflectance``), nothing is computed here."""
    size = chips.sizes["y"]
    res = float(chips.attrs.get("resolution_m", 10.0))
    ids = chips["chip_id"].values
    if "reflectance" in chips and chips["reflectance"].chunks:
        bounds = np.cumsum((0, *chips["reflectance"].chunks[0]))
    else:
        bounds = np.array([0, len(ids)])
    block_of = pd.Series(np.searchsorted(bounds, np.arange(len(ids)), side="right") - 1,
                         index=pd.Index(ids, name="chip_id"))
    labels = labels.loc[labels["chip_id"].isin(block_of.index)] if len(labels) else labels
    per_block = (dict(tuple(labels.groupby(labels["chip_id"].map(block_of).to_numpy())))
                 if len(labels) else {})
    blocks = []
    for k, (s, e) in enumerate(itertools.pairwise(bounds)):
        part = ids[s:e]
        sub = per_block.get(k, labels.iloc[:0])
        task = dask.delayed(rasterize_ship_masks, pure=True)(sub, part, size, res)
        blocks.append(da.from_delayed(task, shape=(e - s, size, size), dtype=np.uint8))
    arr = (da.concatenate(blocks, axis=0) if blocks else
           da.zeros((0, size, chips.sizes["x"]), dtype=np.uint8))
    out = chips.assign(ship_mask=(("chip", "y", "x"), arr))
    out["ship_mask"].attrs.update(
        description="ship instance mask: 0 background, k = label with instance k",
        rule=f"hull covers >= {MIN_COVER:g} of the pixel ({SUPERSAMPLE}x{SUPERSAMPLE} "
             "samples); at least the best-covered pixel per box")
    return out
