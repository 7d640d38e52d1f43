"""The embedded world's fleet: ships, their motion and their synthetic AIS fixes.

Ships move in straight lines (in UTM) at constant speed around each scene's sensing time.
Every AIS row is labelled ``provider='synthetic'``; the truth (where each hull is at sensing
time) is kept separately so tests can check chips against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyproj import Geod, Transformer

from s2xr.demo.render import Coast, ShipDraw

SHIP_TYPES = (70, 80, 30, 60, 37, 52)  # cargo, tanker, fishing, passenger, pleasure, tug
NAMES = ("ALBORAN", "TARIFA STAR", "CEUTA TRADER", "MED SPIRIT", "NORDIC WAVE", "ATLAS",
         "GIBRALTAR DAWN", "CAPE SPARTEL", "PUNTA EUROPA", "SEA LION", "BLUE HORIZON", "ORCA")


@dataclass(frozen=True)
class Ship:
    """Static identity of one synthetic vessel (AIS static-data fields)."""

    mmsi: int
    name: str
    ship_type: int
    to_bow: float
    to_stern: float
    to_port: float
    to_starboard: float
    has_static: bool
    fix_interval_s: float

    @property
    def length(self) -> float:
        return self.to_bow + self.to_stern

    @property
    def beam(self) -> float:
        return self.to_port + self.to_starboard


def make_fleet(rng: np.random.Generator, n: int) -> list[Ship]:
    """``n`` ships with plausible types and sizes; ~10 % without static data."""
    mids = np.array([224, 225, 236, 242, 247, 255, 311, 538, 636])
    ships = []
    for i in range(n):
        mmsi = int(rng.choice(mids)) * 1_000_000 + int(rng.integers(100_000, 999_999))
        stype = int(rng.choice(SHIP_TYPES))
        length = float({70: rng.uniform(120, 300), 80: rng.uniform(150, 330),
                        30: rng.uniform(20, 45), 60: rng.uniform(80, 200),
                        37: rng.uniform(12, 25), 52: rng.uniform(25, 40)}[stype])
        beam = max(4.0, length / rng.uniform(5.5, 7.5))
        to_bow = round(length * rng.uniform(0.72, 0.88))
        to_port = round(beam * rng.uniform(0.4, 0.6))
        interval = float(rng.choice([2.0, 6.0, 10.0, 30.0, 180.0, 240.0],
                                    p=[0.2, 0.3, 0.25, 0.1, 0.05, 0.1]))
        ships.append(Ship(mmsi=mmsi, name=f"{NAMES[i % len(NAMES)]} {i:02d}", ship_type=stype,
                          to_bow=float(to_bow), to_stern=float(round(length) - to_bow),
                          to_port=float(to_port), to_starboard=float(round(beam) - to_port),
                          has_static=bool(rng.random() > 0.1), fix_interval_s=interval))
    return ships


def place_ships(rng: np.random.Generator, ships: list[Ship], coast: Coast,
                bounds: tuple[float, float, float, float],
                min_separation_m: float = 600.0) -> list[tuple[float, float, str]]:
    """Sensing-time antenna positions (x, y, where): open water, near coast, or outside;
    ships in the window are at least ``min_separation_m`` apart (one ship per chip centre)."""
    x0, y0, x1, y1 = bounds
    out: list[tuple[float, float, str]] = []

    def clear(x: float, y: float) -> bool:
        return all(np.hypot(x - px, y - py) >= min_separation_m for px, py, _ in out)

    for _ in ships:
        kind = rng.choice(["water", "coast", "outside"], p=[0.78, 0.12, 0.10])
        if kind == "outside":
            side = rng.integers(4)
            d = rng.uniform(3000, 12000)
            x = rng.uniform(x0, x1) if side < 2 else (x0 - d if side == 2 else x1 + d)
            y = rng.uniform(y0, y1) if side >= 2 else (y0 - d if side == 0 else y1 + d)
            out.append((float(x), float(y), "outside"))
            continue
        for _attempt in range(200):
            x = rng.uniform(x0 + 1500, x1 - 1500)
            north, south = coast.shores(np.array([x]))
            if kind == "coast":
                y = (north[0] - rng.uniform(150, 400)) if rng.random() < 0.5 else (
                    south[0] + rng.uniform(150, 400))
            else:
                y = rng.uniform(south[0] + 1500, north[0] - 1500)
            if y0 + 1500 < y < y1 - 1500 and clear(x, y):
                break
        out.append((float(x), float(y), str(kind)))
    return out


def ship_draws(ships: list[Ship], positions: list[tuple[float, float, str]],
               headings: np.ndarray, speeds: np.ndarray) -> list[ShipDraw]:
    return [ShipDraw(x=p[0], y=p[1], heading=float(h), to_bow=s.to_bow, to_stern=s.to_stern,
                     to_port=s.to_port, to_starboard=s.to_starboard, speed_ms=float(v))
            for s, p, h, v in zip(ships, positions, headings, speeds, strict=True)]


def make_fixes(rng: np.random.Generator, ships: list[Ship], draws: list[ShipDraw],
               sensing: pd.Timestamp, epsg: int, span_s: float = 900.0) -> pd.DataFrame:
    """AIS position reports around ``sensing`` for every ship (one row per fix).

    Columns: mmsi, time (UTC), lat, lon, sog (kn), cog, heading, ship_type, length, beam,
    ship_name, provider='synthetic'. Fix times are jittered so that the fix nearest the
    sensing time is a few seconds to ~2 minutes away, as with real AIS.
    """
    to_ll = Transformer.from_crs(epsg, 4326, always_xy=True)
    geod = Geod(ellps="WGS84")
    rows = []
    for ship, d in zip(ships, draws, strict=True):
        # hulls are drawn on the UTM grid; AIS reports true bearings (grid + convergence)
        g = np.deg2rad(d.heading)
        (lo0, lo1), (la0, la1) = to_ll.transform([d.x, d.x + 100 * np.sin(g)],
                                                 [d.y, d.y + 100 * np.cos(g)])
        true_heading = float(geod.inv(lo0, la0, lo1, la1)[0]) % 360.0
        step = ship.fix_interval_s
        phase = rng.uniform(0, step)
        t = np.arange(-span_s + phase, span_s, step)
        t = t + rng.uniform(-0.2, 0.2, t.size) * min(step, 10.0)
        h = np.deg2rad(d.heading)
        xs = d.x + d.speed_ms * t * np.sin(h)
        ys = d.y + d.speed_ms * t * np.cos(h)
        lon, lat = to_ll.transform(xs, ys)
        times = sensing + pd.to_timedelta(t, unit="s")
        rows.append(pd.DataFrame({
            "mmsi": ship.mmsi, "time": times, "lat": lat, "lon": lon,
            "sog": d.speed_ms / 0.514444, "cog": true_heading,
            "heading": np.round(true_heading) % 360 if d.speed_ms > 0.5 else np.nan,
            "ship_type": ship.ship_type if ship.has_static else pd.NA,
            "length": ship.length if ship.has_static else np.nan,
            "beam": ship.beam if ship.has_static else np.nan,
            "to_bow": ship.to_bow if ship.has_static else np.nan,
            "to_stern": ship.to_stern if ship.has_static else np.nan,
            "to_port": ship.to_port if ship.has_static else np.nan,
            "to_starboard": ship.to_starboard if ship.has_static else np.nan,
            "ship_name": ship.name, "provider": "synthetic"}))
    out = pd.concat(rows, ignore_index=True)
    out["ship_type"] = out["ship_type"].astype("Int64")
    return out
