"""Run ``s2xr … run …`` as a documented command runs it, and stop it the way the docs say a
waiting run is stopped (SIGTERM, as ``systemctl stop`` or Ctrl-C does) once it waits: for the
next cycle of ``--continuous``, or for a live overpass window (which on real services may be
hours away). Exits with the run's own status. Used by tests/test_docs_commands.py:

    python tests/helpers/stop_when_waiting.py s2xr run --config configs/earth-search.yaml

Event-driven: it reads the run's log (stderr, passed through) line by line and signals on
the first line that says the run is waiting.
"""

from __future__ import annotations

import signal
import subprocess
import sys

WAITING = ("stage idle: next cycle",  # --continuous between cycles
           "next overpass window",     # a batch waiting for a window to start
           "capturing AIS from")       # a batch capturing a window open now


def main(argv: list[str]) -> int:
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stderr is not None
    signalled = False
    for line in proc.stderr:
        sys.stderr.write(line)
        if not signalled and any(w in line for w in WAITING) and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            signalled = True
            sys.stderr.write(f"[stop_when_waiting] SIGTERM after: {line.strip()}\n")
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
