"""``s2xr collect-ais``: capture aisstream.io (or a replay server) into the dataset layout.

Boxes come from the active schedule windows' tile footprints (``--restrict-to-schedule``),
from ``--tile`` / ``--box``, or from ``ais.boxes`` in the config (else the whole world). The
API key is read from ``AISSTREAM_API_KEY`` (environment or ``.env``) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click
import pandas as pd

from pipelines.options import config_option, require_local, resolve_config
from s2xr.ais.aisstream import WORLD, Box, boxes_for_tiles
from s2xr.ais.capture import AisCapture, CaptureResult, CaptureSettings, capture_segments
from s2xr.ais.sampling import DailySampler
from s2xr.ais.schedule import capture_segments_from, read_schedule
from s2xr.ais.storage import AisStore
from s2xr.errors import InputError
from s2xr.store.layout import DatasetLayout


def _until(until: str | None, duration: float | None) -> pd.Timestamp | None:
    if until and duration:
        raise InputError("give --until or --duration, not both")
    if duration:
        return pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=duration)
    if until:
        t = pd.Timestamp(until)
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return None


async def _run(capture: AisCapture, segments: list | None, until: pd.Timestamp | None
               ) -> CaptureResult:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, capture.request_stop)
    if segments is not None:
        return await capture_segments(capture, segments)
    return await capture.run(until)


@click.command("collect-ais")
@config_option
@click.option("--url", default=None, help="Websocket endpoint (overrides ais.url), e.g. a "
              "replay server ws://127.0.0.1:PORT/v0/stream.")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False),
              help="Output directory (default: storage.root).")
@click.option("--schedule", "schedule_path", default=None,
              type=click.Path(dir_okay=False), help="Overpass schedule CSV (tile_id, "
              "satellite, start_time_utc, end_time_utc).")
@click.option("--restrict-to-schedule", is_flag=True, help="Capture only during the "
              "schedule's windows, subscribed to the active tiles' footprint boxes; exit "
              "when the last window ends.")
@click.option("--tile", "tiles", multiple=True, help="Subscribe to this tile's footprint "
              "(repeatable).")
@click.option("--box", "boxes", multiple=True, help="Subscribe to south,west,north,east "
              "(degrees; repeatable).")
@click.option("--mmsi", "mmsi", multiple=True, help="Only this MMSI (repeatable).")
@click.option("--until", default=None, help="Stop at this UTC time (ISO 8601).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds.")
@click.option("--watchdog", "watchdog_s", type=click.FloatRange(min=0, min_open=True),
              default=None,
              help="Reconnect after this many seconds without a message.")
@click.option("--random-sample", "random_per_day", type=click.IntRange(min=0), default=None,
              help="Keep up to N random distinct MMSIs per day "
                   f"({DatasetLayout.AIS_SAMPLE}).")
@click.option("--sample-only", is_flag=True, help="With --random-sample: store only the "
              "sample (and static data), not every position (world-wide sampling).")
@click.option("--no-raw", is_flag=True, help="Do not append raw frames to "
              f"{DatasetLayout.AIS_RAW}.")
@click.option("--xlsx/--no-xlsx", default=None, help="Also write .xlsx overpass files.")
def collect_ais(config_path: str | None, url: str | None, out_dir: str | None,
                schedule_path: str | None, restrict_to_schedule: bool, tiles: tuple[str, ...],
                boxes: tuple[str, ...], mmsi: tuple[str, ...], until: str | None,
                duration: float | None, watchdog_s: float | None,
                random_per_day: int | None, sample_only: bool, no_raw: bool,
                xlsx: bool | None) -> None:
    """Capture AIS positions and static data from aisstream.io into ais/YYYYMMDD/."""
    cfg = resolve_config(config_path, out=out_dir,
                         ais={"url": url, "watchdog_s": watchdog_s, "write_xlsx": xlsx,
                              "random_sampling_per_day": random_per_day})
    require_local(cfg, "collect-ais")  # `s2xr run` captures into an object store dataset
    ais = cfg.ais
    root = Path(cfg.storage.root)
    if restrict_to_schedule and not schedule_path:
        raise InputError("--restrict-to-schedule needs --schedule "
                         f"{DatasetLayout(Path()).schedule}")
    chosen: list[Box] = [Box.parse(b) for b in boxes] + boxes_for_tiles(tiles)
    if not chosen:
        chosen = [Box(*b) for b in ais.boxes] or [WORLD]
    if sample_only and not ais.random_sampling_per_day:
        raise InputError("--sample-only needs --random-sample N (or "
                         "ais.random_sampling_per_day in the config)")
    settings = CaptureSettings.from_config(ais, boxes=tuple(chosen),
                                           mmsi=tuple(mmsi) or None,
                                           tiles=tuple(tiles) or None,
                                           keep_raw=not no_raw,
                                           store_positions=not sample_only)
    end = _until(until, duration)
    segments = None
    if schedule_path:
        sched = read_schedule(schedule_path)
        if restrict_to_schedule:
            segments = capture_segments_from(sched, pad_s=ais.schedule_pad_s)
            if end is not None:
                segments = [(a, min(b, end), t) for a, b, t in segments if a < end]
            if not segments:
                click.echo("no schedule window ends in the future: nothing to capture")
                return
            click.echo(f"{len(segments)} capture segment(s) from {segments[0][0]} to "
                       f"{segments[-1][1]}")
        elif end is None:
            end = sched["end_time_utc"].max()
    host = settings.url.split("://", 1)[-1].split("/", 1)[0]
    store = AisStore(root, xlsx=ais.write_xlsx, source=host)
    sampler = DailySampler(root, ais.random_sampling_per_day) \
        if ais.random_sampling_per_day else None
    capture = AisCapture(ais.api_key, settings, store, sampler=sampler)
    try:
        res = asyncio.run(_run(capture, segments, end))
    except KeyboardInterrupt:
        capture.result.stop_reason = "interrupted (Ctrl-C); everything received is stored"
        res = capture.result
    finally:
        store.close()
    click.echo(f"collect-ais: {res.summary()}")
    click.echo(f"outputs under {DatasetLayout(root).ais} and {store.index_path}")
