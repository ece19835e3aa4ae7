"""Running the ``ipvi`` command line as a user does: a subprocess with its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def ipvi(
    args: list[str], env: dict, timeout: float = 900, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``ipvi ARGS`` with ``env`` added to this environment (in ``cwd``, default this
    folder); its exit code and output, for tests of commands that fail."""
    return subprocess.run(
        [sys.executable, "-m", "ipvi.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
        cwd=cwd,
    )


def run_ipvi(args: list[str], env: dict) -> str:
    """Run ``ipvi ARGS`` with ``env`` added to this environment; its standard output.

    A non-zero exit fails the test with the end of standard error.
    """
    run = ipvi(args, env)
    assert run.returncode == 0, f"ipvi {' '.join(args)}: {run.stderr[-2000:]}"
    return run.stdout


def in_process(args: list[str], env: dict, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run ``ipvi ARGS`` in this process with ``env`` set (``monkeypatch``, undone after);
    its exit code, standard output and standard error (``capsys``): a Python start less than
    :func:`ipvi`, for a command that leaves nothing behind in the process."""
    from ipvi.cli import main

    capsys.readouterr()  # what ran before is not this command's output
    with monkeypatch.context() as patched:
        for key, value in env.items():
            patched.setenv(key, value)
        code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
