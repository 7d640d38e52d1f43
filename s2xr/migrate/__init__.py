"""Coming over from the predecessor (see docs/migrating.md): its config converted
(:func:`migrate_config`); its AIS files, ESA plan CSV and ``ops.db`` are read by
:func:`s2xr.ais.read_ais_table` and :mod:`s2xr.planning` as they are."""

from s2xr.migrate.convert import Entry, Migration, migrate_config

__all__ = ["Entry", "Migration", "migrate_config"]
