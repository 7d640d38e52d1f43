"""One table of what the items hold: :class:`SceneAssets`, built once per job.

Items are normalised (``proj:epsg`` set) and their band assets checked once; the table
(one row per item: grid, sensing time, hrefs, scale/offset per band) is what the loader
reads pixels from and what the writer records as provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from s2xr.errors import SceneError
from s2xr.scenes.items import normalize_item, reflectance_params, table_of_normalized

CLASS_BAND = "scl"


@dataclass(frozen=True)
class SceneAssets:
    """Normalised items and their table.

    ``table`` (index item_id): the :func:`~s2xr.scenes.items_table` columns (datetime,
    tile_id, epsg, x0, y0, res, height, width, hrefs, ...) plus ``scales`` and ``offsets``
    (tuples in ``bands`` order) and ``scl_href``. ``bands`` are the reflectance bands;
    the class band ``scl`` is always present.
    """

    items: tuple[dict[str, Any], ...]
    bands: tuple[str, ...]
    table: pd.DataFrame

    @property
    def epsgs(self) -> list[int]:
        return sorted({int(e) for e in self.table["epsg"]})

    def subset(self, item_ids: Sequence[str] | None = None, *, epsg: int | None = None
               ) -> SceneAssets:
        """The assets of ``item_ids`` and/or one CRS (same order as this table)."""
        keep = pd.Series(True, index=self.table.index)
        if item_ids is not None:
            keep &= self.table.index.isin(list(item_ids))
        if epsg is not None:
            keep &= self.table["epsg"] == epsg
        ids = set(self.table.index[keep])
        return SceneAssets(tuple(it for it in self.items if it["id"] in ids), self.bands,
                           self.table.loc[keep])

    def describe_read_failures(self, failures: dict[str, str]) -> dict[str, str]:
        """``{href: error}`` (:func:`~s2xr.scenes.remote.take_read_failures`) → ``{item_id:
        "asset(s) red, scl of ITEM: first error"}`` for this table's items; hrefs of other
        items are left out."""
        out: dict[str, str] = {}
        for item_id, hrefs in zip(self.table.index, self.table["hrefs"], strict=True):
            bad = [(band, failures[h]) for band, h in hrefs.items() if h in failures]
            if bad:
                out[str(item_id)] = (f"asset(s) {', '.join(b for b, _ in bad)} of {item_id}: "
                                     f"{bad[0][1]}")
        return out

    def provenance(self, item_id: str, resampling: str) -> dict[str, Any]:
        """What the writer records for a chip of ``item_id``: hrefs, scale/offset, resampling."""
        row = self.table.loc[item_id]
        return {
            "hrefs": {**{b: row["hrefs"][b] for b in self.bands}, CLASS_BAND: row["scl_href"]},
            "scale_offset": {b: [s, o] for b, s, o in zip(self.bands, row["scales"],
                                                          row["offsets"], strict=True)},
            "resampling": {"10m": "none", "20m": resampling, "scl": "nearest"},
        }


def scene_assets(items: Sequence[dict[str, Any]], bands: Sequence[str]) -> SceneAssets:
    """:class:`SceneAssets` for ``items`` (raw STAC item dicts) and reflectance ``bands``.

    Raises :class:`~s2xr.errors.SceneError` naming the item and band when an item lacks a
    band asset (``scl`` included) or has no projection information. Does no I/O.
    """
    refl = tuple(b for b in bands if b != CLASS_BAND)
    norm = [normalize_item(it) for it in items]
    if len({it["id"] for it in norm}) != len(norm):
        raise SceneError("items repeat an id; de-duplicate them (s2xr.scenes.dedupe_items)")
    table = table_of_normalized(norm, (*refl, CLASS_BAND))
    table.index = pd.Index(table["item_id"].to_numpy(), name=None)
    params = [[reflectance_params(it, b) for b in refl] for it in norm]
    table["scales"] = [tuple(s for s, _ in p) for p in params]
    table["offsets"] = [tuple(o for _, o in p) for p in params]
    table["scl_href"] = [h[CLASS_BAND] for h in table["hrefs"]]
    return SceneAssets(tuple(norm), refl, table)
