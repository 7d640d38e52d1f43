"""The suite's leaked-child guard (tests/conftest.py) fails a test that leaves a process
running, kills the process, and passes a test that stops what it started."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psutil

HERE = Path(__file__).parent

LEAKY = '''
import subprocess, sys

def test_leaks():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open("pid.txt", "w").write(str(p.pid))

def test_tidy():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    p.terminate()
    p.wait()
'''


def test_a_leaked_child_fails_its_test_and_is_killed(tmp_path: Path) -> None:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), "-c", "/dev/null", "test_leaky.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "test_leaks" in text and "left 1 child process(es) running (killed)" in text
    # both bodies pass; the leak is an error in test_leaks' teardown, test_tidy is clean
    assert "2 passed, 1 error" in text and "ERROR test_leaky.py::test_leaks" in text
    pid = int((tmp_path / "pid.txt").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
