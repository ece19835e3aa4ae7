"""Start a real ``bentoml serve`` process on a free loopback port (tests and benchmarks).

The server is the one users run: the same service, middlewares and configuration file; it is
started from the project root like ``bentoml serve`` with the bentofile. Browser tests and
benchmarks drive the system Chromium with the flags of :data:`CHROMIUM_ARGS`
(Playwright's own browser download cannot run here).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from ipvi.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("IPVI_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def launch_chromium(playwright):
    """The system Chromium, headless and quiet, through a started Playwright."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(host: str, port: int, keep_alive_seconds: int) -> list[str]:
    """The ``bentoml serve`` command line of ``ipvi serve`` (run it from :data:`REPO_ROOT`).

    The keep-alive timeout is passed on because BentoML's default (5 s) equals httpx's idle
    expiry: a client could then reuse a connection the server closes at the same moment (a
    read error in about one request in 3,000 at 32 clients).
    """
    return [
        str(Path(sys.executable).with_name("bentoml")),
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--timeout-keep-alive",
        str(keep_alive_seconds),
    ]


class ServerProcess:
    """A ``bentoml serve`` subprocess; use as a context manager.

    Parameters
    ----------
    env : dict
        Extra environment: ``IPVI_CONFIG``, ``IPVI_DATABASE_URL``, ``MLFLOW_TRACKING_URI``...
    log_path : Path
        Where the server's output goes (read it when a test fails).
    port : int, optional
        Defaults to a free port.
    start_timeout : float
        Seconds to wait for /readyz.
    """

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        start_timeout: float = 90.0,
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.started_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """``bentoml serve`` on this port with the keep-alive of the configuration the server
        reads (``IPVI_CONFIG`` in ``env``, else the process's), as ``ipvi serve`` passes it."""
        path = self.env.get("IPVI_CONFIG") or os.environ.get("IPVI_CONFIG")
        settings = load_config(path).serving
        return serve_command("127.0.0.1", self.port, settings.keep_alive_seconds)

    def start(self) -> ServerProcess:
        env = {**os.environ, **self.env}
        command = self.command()
        started = time.perf_counter()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + self.start_timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code < 500:
                    self.started_seconds = time.perf_counter() - started
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not ready in {self.start_timeout} s: {self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = Path(self.log_path).read_text(errors="replace") if self.log_path else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the server and its workers (SIGTERM: graceful; SIGKILL: a crash of all of them).

        Workers run in process groups of their own, so SIGKILL goes to each one by id; after a
        graceful stop, any worker still running is killed too, so none is left behind.
        """
        if self.process is None or self.process.poll() is not None:
            return
        workers = psutil.Process(self.process.pid).children(recursive=True)
        if sig == signal.SIGKILL:
            for worker in workers:
                _kill(worker)
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        for worker in workers:
            _kill(worker)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _kill(process: psutil.Process) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.kill()


def curl_example(base_url: str = "http://127.0.0.1:3000", key: str = "$IPVI_KEY") -> str:
    """A curl command that scores the fixed synthetic example person (for the demo's output)."""
    import json
    import shlex

    from serving.schemas import SCORE_EXAMPLE

    body = shlex.quote(json.dumps(SCORE_EXAMPLE, separators=(",", ":")))
    return (
        f'curl -s -X POST {base_url}/v1/score -H "Authorization: Bearer {key}" '
        f"-H 'Content-Type: application/json' -d {body}"
    )
