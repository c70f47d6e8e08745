"""Shared test helpers: temporary identities made by the real bootstrap.sh, never the user's files."""

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = ROOT / "bootstrap.sh"
IN_CI = os.environ.get("CI") == "true"


def require_tool(testcase: unittest.TestCase, name: str) -> str:
    """Return the path of a tool; skip without it locally, but fail under CI=true (CI installs it)."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            testcase.fail(f"{name} is required under CI=true (.ci/run installs it)")
        raise unittest.SkipTest(f"{name} not installed")
    return path


def make_project(owner) -> Path:
    """Copy bootstrap.sh into a fresh temporary directory removed after the test (or, given a
    TestCase class, after all its tests); return that directory."""
    tmp = tempfile.TemporaryDirectory(prefix="mtls-test-")
    (owner.addClassCleanup if isinstance(owner, type) else owner.addCleanup)(tmp.cleanup)
    project = Path(tmp.name)
    shutil.copy2(BOOTSTRAP, project / "bootstrap.sh")
    return project


def run_bootstrap(project: Path, *args: str, env=None, timeout: float = 60,
                  input: str = None) -> subprocess.CompletedProcess:
    """Run the project's copy of bootstrap.sh with args; capture text output, never raise on failure."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(["bash", str(project / "bootstrap.sh"), *args], cwd=project,
                          env=full_env, capture_output=True, text=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)
