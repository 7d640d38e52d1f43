"""The services a run talks to: the configured STAC API and AIS stream, or the embedded
offline world's (its STAC items served by a real STAC API and its AIS by the aisstream
replay server on 127.0.0.1, stopped at the end)."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.run_types import RunControl
from s2xr.ais import read_ais_table
from s2xr.config import Config, with_overrides
from s2xr.store.layout import DatasetLayout

log = logging.getLogger("pipelines.run_job")


def uses_embedded_world(cfg: Config) -> bool:
    """``stac.api_url`` and ``stac.catalog`` both null: the embedded offline world."""
    return cfg.stac.api_url is None and cfg.stac.catalog is None


@dataclass
class Services:
    """What a run's stages talk to: the run's config (pointed at the embedded world's STAC
    API when it is used), the world, and the replay server's frames and throw-away key."""

    cfg: Config
    world: Any = None
    replay_frames: list[str] | None = None
    replay_key: str | None = None


@contextlib.contextmanager
def serve_embedded_stac(cfg: Config, control: RunControl | None = None
                        ) -> Iterator[tuple[Config, Any]]:
    """``(cfg, None)`` for a real config; for the embedded world (``stac.api_url: null``),
    builds or reuses the world and yields ``(cfg pointed at its STAC API, world)`` while
    the API is served on 127.0.0.1 (stopped on exit)."""
    if not uses_embedded_world(cfg):
        yield cfg, None
        return
    from s2xr.demo import StacApiServer, build_world

    if control is not None:
        control.set_stage("world", "building or reusing the embedded world (synthetic)")
    world = build_world(DatasetLayout.of(cfg).world, cfg.demo,
                        progress=control.progress if control is not None else None)
    with StacApiServer(world.collection_path, world.items_path) as server:
        log.info("embedded world: %d synthetic item(s) served at %s", len(world.item_ids),
                 server.url)
        yield with_overrides(cfg, {"stac": {"api_url": server.url,
                                            "collection": world.collection}}), world


@contextlib.contextmanager
def services(cfg: Config, control: RunControl) -> Iterator[Services]:
    """The embedded world's STAC API and replay frames for the run, or the real config."""
    with serve_embedded_stac(cfg, control) as (run_cfg, world):
        if world is None:
            yield Services(run_cfg)
            return
        from s2xr.ais.synthetic import to_aisstream_frames

        frames = to_aisstream_frames(read_ais_table(world.ais_path).points)
        log.info("embedded world: %d AIS frame(s) for the replay server", len(frames))
        # the replay server accepts only this run's throw-away key, never the user's
        key = f"replay-{secrets.token_hex(8)}"
        run_cfg = run_cfg.model_copy(update={"ais": run_cfg.ais.model_copy(
            update={"api_key": None})})
        yield Services(run_cfg, world=world, replay_frames=frames, replay_key=key)
