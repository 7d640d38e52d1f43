"""The embedded offline world: synthetic Sentinel-2 scenes, STAC items, AIS tracks, servers.

Everything here is labelled synthetic (``provider='synthetic'`` in AIS, ``s2xr:synthetic`` in
items); it backs the demo, the tests and the benchmarks and is never a silent fallback.
"""

from s2xr.demo.stac_server import StacApiServer
from s2xr.demo.world import World, build_world, window_geobox

__all__ = ["StacApiServer", "World", "build_world", "window_geobox"]
