"""The chip index tab's download buttons: the index (GeoParquet, CSV), the labels (COCO and
YOLO-OBB zips), the STAC catalog (zip) and the chips the table shows now — after its header
filters (split, tile, ship type, date, …) and the QA choice — as a zip. Each file is made
when its button is clicked (:mod:`s2xr.store.downloads`), in the dashboard's process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn

from s2xr import downloads
from s2xr.store.layout import DatasetLayout

log = logging.getLogger(__name__)

CSS_CLASS = "s2xr-download"


def _button(label: str, filename: str, make: Callable[[], Path]) -> pn.widgets.FileDownload:
    def callback() -> Any:
        try:
            return str(make())
        except (FileNotFoundError, ValueError) as exc:  # nothing to download (yet)
            log.warning("dashboard: download %s: %s", filename, exc)
            return None

    return pn.widgets.FileDownload(callback=callback, filename=filename, label=label,
                                   embed=False, color="light",
                                   css_classes=[CSS_CLASS], width=170)


def download_buttons(root: Path, shown: Callable[[], pd.DataFrame]) -> list[Any]:
    """The buttons for the dataset at ``root``; ``shown()`` gives the rows the table shows
    now (with a ``chip_id`` column)."""
    return [
        _button("Index (GeoParquet)", DatasetLayout.INDEX,
                lambda: downloads.index_download(root, "parquet")),
        _button("Index (CSV)", Path(DatasetLayout.INDEX).with_suffix(".csv").name,
                lambda: downloads.index_download(root, "csv")),
        _button("Labels (COCO zip)", "labels-coco.zip",
                lambda: downloads.labels_download(root, "coco")),
        _button("Labels (YOLO-OBB zip)", "labels-yolo-obb.zip",
                lambda: downloads.labels_download(root, "yolo-obb")),
        _button("STAC catalog (zip)", "stac-catalog.zip",
                lambda: downloads.stac_download(root)),
        _button("Chips shown (zip)", "chips.zip",
                lambda: downloads.chips_download(root, list(shown()["chip_id"]))),
    ]
