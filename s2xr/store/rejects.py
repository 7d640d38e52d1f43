"""``indexes/rejects.parquet``: every AIS row, point, item and chip that gave no chip, why.

One fixed schema (:data:`REJECT_SCHEMA`) whatever a job or an older file held. Which MMSI is
valid is the AIS layer's rule: the caller passes it in (``parse_mmsi``, e.g.
:func:`s2xr.ais.mmsi.parse_mmsi`), so the store does not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from s2xr.store.layout import DatasetLayout, atomic_write

MmsiRule = Callable[[object], "int | None"]

REJECT_SCHEMA = pa.schema([
    ("row", pa.int64()), ("mmsi", pa.int64()), ("value", pa.string()),
    ("item_id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
])
REJECT_COLUMNS = ["row", "mmsi", "item_id", "stage", "reason"]


def typed_rejects(df: pd.DataFrame, *, parse_mmsi: MmsiRule) -> pa.Table:
    """Rejects rows with the fixed :data:`REJECT_SCHEMA`, whatever the input held: ``mmsi``
    is an int64 only when ``parse_mmsi`` accepts it (else null, and the raw text goes to
    ``value`` if that is empty), ``row`` an int64, the rest text."""
    n = len(df)

    def col(name: str) -> pd.Series:
        return df[name] if name in df else pd.Series([None] * n, index=df.index, dtype=object)

    raw_mmsi = col("mmsi").astype(object)
    nums = [parse_mmsi(v) for v in raw_mmsi]
    ok = pd.Series([v is not None for v in nums], index=df.index, dtype=bool)
    value = col("value").astype(object)
    bad_raw = ~ok & raw_mmsi.notna()
    value = value.where(value.notna() | ~bad_raw, raw_mmsi.astype(str))

    def text(s: pd.Series) -> list[str | None]:
        return [None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA
                else str(v) for v in s.astype(object)]

    rows = pd.to_numeric(col("row"), errors="coerce")
    recorded = pd.to_datetime(col("recorded_at"), utc=True, errors="coerce")
    return pa.table({
        "row": pa.array([None if pd.isna(v) else int(v) for v in rows], pa.int64()),
        "mmsi": pa.array(nums, pa.int64()),
        "value": pa.array(text(value), pa.string()),
        "item_id": pa.array(text(col("item_id")), pa.string()),
        "stage": pa.array(text(col("stage")), pa.string()),
        "reason": pa.array(text(col("reason")), pa.string()),
        "recorded_at": pa.array(recorded.dt.tz_convert("UTC"), pa.timestamp("us", tz="UTC")),
    }, schema=REJECT_SCHEMA)


def read_rejects(root: str | Path, *, parse_mmsi: MmsiRule) -> pd.DataFrame:
    """The rejects as a DataFrame with the fixed schema (empty if none)."""
    path = DatasetLayout(Path(root)).rejects
    if not path.exists():
        return REJECT_SCHEMA.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    return typed_rejects(pd.read_parquet(path), parse_mmsi=parse_mmsi).to_pandas(
        types_mapper=pd.ArrowDtype)


def write_rejects(root: str | Path, rejects: pd.DataFrame, *, parse_mmsi: MmsiRule) -> None:
    """Append a job's rejects (``row, mmsi, [value,] item_id, stage, reason``) with the fixed
    schema (an older or foreign file is coerced to it, never allowed to change a column's
    type); a row already recorded (same mmsi, item, stage, reason, row) is kept once."""
    if rejects.empty:
        return
    path = DatasetLayout(Path(root)).rejects
    new = typed_rejects(rejects.assign(recorded_at=pd.Timestamp.now(tz="UTC")),
                        parse_mmsi=parse_mmsi)
    full = pa.concat_tables([typed_rejects(pd.read_parquet(path), parse_mmsi=parse_mmsi),
                             new]) if path.exists() else new
    df = full.to_pandas(types_mapper=pd.ArrowDtype)
    keys = ["mmsi", "item_id", "stage", "reason", "row"]
    keep = ~df.astype({k: object for k in keys}).duplicated(keys, keep="last").to_numpy()
    full = full.filter(pa.array(keep))
    atomic_write(path, lambda p: pq.write_table(full, p))


def combine_rejects(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty frames one after the other (an empty frame with
    :data:`REJECT_COLUMNS` when there is none)."""
    parts = [r for r in frames if len(r)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=REJECT_COLUMNS)
