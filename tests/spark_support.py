"""A standalone Spark cluster on loopback for the tests: one master and one worker started
from the pyspark installation (its pip package ships ``bin/spark-class``, not the start
scripts), stopped by their process ids."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

# The JVMs of the tests (daemons, drivers, executors) live for seconds on a small sample, on a
# 2-core machine shared with the rest of the suite: with the client compiler alone and one GC
# thread they start and finish sooner, where the optimising compiler's and the parallel
# collector's threads would not pay back before the JVM exits. Test settings, not the
# engine's defaults (a long job on a real cluster wants both).
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def spark_home() -> Path:
    pyspark = pytest.importorskip("pyspark")
    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a Spark daemon exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Cluster:
    master_url: str
    master: subprocess.Popen
    worker: subprocess.Popen
    folder: Path

    def executors(self) -> list[psutil.Process]:
        """The worker's running executor JVMs (children running CoarseGrainedExecutorBackend;
        an executor that has exited, a zombie until the worker reaps it, is not one)."""
        return [
            child
            for child in psutil.Process(self.worker.pid).children(recursive=True)
            if "CoarseGrainedExecutorBackend" in _command_line(child)
        ]

    def stop(self) -> None:
        for process in (self.worker, self.master):
            for child in psutil.Process(process.pid).children(recursive=True):
                kill(child)
            process.kill()
            process.wait(timeout=30)


def _command_line(process: psutil.Process) -> str:
    """The process's command line, empty once it has exited."""
    try:
        return " ".join(process.cmdline())
    except psutil.NoSuchProcess:  # gone, or a zombie (ZombieProcess is one)
        return ""


def kill(process: psutil.Process) -> None:
    """SIGKILL, unless the process has exited already."""
    with contextlib.suppress(psutil.NoSuchProcess):
        process.kill()


def start_cluster(folder: Path, cores: int = 2, memory: str = "2g") -> Cluster:
    """A master and one worker bound to 127.0.0.1, logs in ``folder``."""
    home = spark_home()
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(folder),
        "SPARK_WORKER_DIR": str(folder / "work"),
        "SPARK_DAEMON_JAVA_OPTS": TEST_JVM_OPTIONS,
    }
    port, master_ui, worker_ui = free_port(), free_port(), free_port()
    spark_class = str(home / "bin" / "spark-class")

    def daemon(main: str, *args: str, log: str) -> subprocess.Popen:
        with open(folder / log, "w") as output:  # the daemon keeps its own descriptor
            return subprocess.Popen(
                [spark_class, f"org.apache.spark.deploy.{main}", *args],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    master = daemon(
        "master.Master",
        *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(master_ui)),
        log="master.log",
    )
    url = f"spark://127.0.0.1:{port}"
    try:
        _wait_for_port(port, master)
        worker = daemon(
            "worker.Worker",
            *(url, "--host", "127.0.0.1", "--webui-port", str(worker_ui)),
            *("--cores", str(cores), "--memory", memory, "--work-dir", str(folder / "work")),
            log="worker.log",
        )
    except BaseException:
        master.kill()
        raise
    cluster = Cluster(master_url=url, master=master, worker=worker, folder=folder)
    deadline = time.monotonic() + 90
    while "Successfully registered with master" not in (folder / "worker.log").read_text():
        if time.monotonic() > deadline or worker.poll() is not None:
            cluster.stop()
            raise RuntimeError("the Spark worker did not register with its master")
        time.sleep(0.5)
    return cluster


def quick_conf(cores: int) -> dict:
    """Spark settings of a test session on ``cores`` cores: a shuffle partition per core (the
    sample fills no more; each partition is a task to schedule) and :data:`TEST_JVM_OPTIONS`."""
    return {
        "spark.sql.shuffle.partitions": cores,
        "spark.driver.extraJavaOptions": TEST_JVM_OPTIONS,
        "spark.executor.extraJavaOptions": TEST_JVM_OPTIONS,
    }


def cluster_conf(master_url: str, cores: int = 2) -> dict:
    """The ``spark`` config section of a run on the test cluster (a worker of ``cores``
    cores), on loopback only."""
    return {
        "master": master_url,
        "conf": {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.executor.memory": "1g",
            "spark.cores.max": cores,
            **quick_conf(cores),
        },
    }
