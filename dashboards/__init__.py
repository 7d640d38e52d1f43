"""The s2xr Panel dashboard: run and watch jobs, browse chips (``s2xr dashboard``).

``panel serve dashboards/app.py`` (or ``s2xr dashboard``) serves :mod:`dashboards.app`. The
process-wide :class:`~dashboards.state.JobManager` owns the background job thread and its
:class:`~pipelines.run_job.RunControl`, so every browser session sees the same run; the
dashboard reads the stores and the ops DB and starts jobs only through ``pipelines``.
"""
