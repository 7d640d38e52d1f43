"""Child processes that die with their parent.

A server s2xr starts (``rustac serve``, a dashboard under test) must not outlive the
process that started it, even when that process is killed with SIGKILL and runs no
clean-up. Two guards:

* on Linux the child asks the kernel for a *parent-death signal* (``PR_SET_PDEATHSIG``):
  SIGTERM is delivered to it the moment the thread that started it exits;
* a pid file beside the child's inputs names it; the next start reaps a stale one left by a
  platform without that signal (or a parent killed between fork and prctl).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def spawn_child(cmd: Sequence[str], *, pid_file: Path | None = None,
                **popen_kw: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(cmd)`` whose process is terminated when this process dies (Linux
    parent-death signal) and, if ``pid_file`` is given, recorded there with this process's
    pid. Stale children named by pid files beside it (same name prefix) whose parent is
    gone are reaped first."""
    if pid_file is not None:
        prefix = pid_file.name.split("-", 1)[0]
        for other in sorted(pid_file.parent.glob(f"{prefix}-*.pid")):
            reap_stale(other)
    parent = os.getpid()
    preexec = (lambda: _die_with_parent(parent)) if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(list(cmd), preexec_fn=preexec, **popen_kw)
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{proc.pid}\n{Path(cmd[0]).name}\n{parent}\n")
    return proc


def stop_child(proc: subprocess.Popen[bytes], pid_file: Path | None = None, *,
               timeout_s: float = 10.0) -> None:
    """Terminate ``proc`` (SIGKILL if it has not exited after ``timeout_s``), wait for it and
    remove its ``pid_file``. A child that already exited is only waited for."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    forget_child(pid_file)


def forget_child(pid_file: Path | None) -> None:
    """Remove ``pid_file`` after its child was stopped."""
    if pid_file is not None:
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()


def reap_stale(pid_file: Path) -> bool:
    """If the parent recorded in ``pid_file`` is gone, terminate the child it names (when
    that pid still runs the recorded program) and remove the file. A file whose parent is
    alive is left alone. Returns whether a process was stopped."""
    import psutil

    try:
        pid_text, name, parent_text = [*pid_file.read_text().splitlines(), "", "", ""][:3]
        pid, parent = int(pid_text), int(parent_text or 0)
    except (FileNotFoundError, ValueError):
        return False
    if parent and psutil.pid_exists(parent) and parent != pid:
        return False  # its parent is alive: a live server of another run
    stopped = False
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        proc = psutil.Process(pid)
        if name in _program_names(proc) and pid != os.getpid():
            log.warning("stopping a stale %s (pid %d) left by a process that died", name, pid)
            proc.terminate()
            try:
                proc.wait(10)
            except psutil.TimeoutExpired:
                proc.kill()
            stopped = True
    forget_child(pid_file)
    return stopped


def _program_names(proc: Any) -> set[str]:
    """The names ``proc`` runs under: its argv[0] base name, its kernel name and its
    executable's base name. A process read in the instant around exec can show an empty
    command line, so the other two are asked as well."""
    import psutil

    names: set[str] = set()
    for attempt in (proc.cmdline, proc.name, proc.exe):
        with contextlib.suppress(psutil.AccessDenied, OSError):
            value = attempt()
            if isinstance(value, list):
                value = value[0] if value else ""
            if value:
                names.add(Path(value).name)
    return names
