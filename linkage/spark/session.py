"""The Spark session of the Spark engine: checks that fail in one line, then the session.

What goes wrong before any work starts is said in one line naming the cause (no Java, no
pyspark, a master that does not answer), not in a JVM stack trace or a connection that
retries for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from ipvi.config import SparkConfig
from ipvi.errors import IpviError

logger = logging.getLogger(__name__)

JAVA_MISSING = (
    "the Spark engine needs Java 17 or later: no `java` on PATH and JAVA_HOME is not set "
    "(install a JDK, or use --engine local)"
)
PYSPARK_MISSING = (
    "the Spark engine needs pyspark: install the pinned requirements (`make venv`), or use "
    "--engine local"
)
MASTER_UNREACHABLE = "Spark master {master} is unreachable ({why}): start it, or set spark.master"
SESSION_FAILED = "the Spark session did not start ({why})"
JOB_FAILED = "the Spark job failed ({why}); nothing was written"
# Settings the engine needs, under what the site's `spark.conf` says.
BASE_CONF: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Pandas functions run once per batch: the comparison kernels once per distinct value
    # pair of a batch, so batches of 10,000 rows (Spark's default) repeat most of their work.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
}
CONNECT_TIMEOUT = 5.0


def java_executable() -> str | None:
    """The ``java`` Spark will start: ``$JAVA_HOME/bin/java``, else the one on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


def check_master(master: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail at once, in one line, when a standalone master ``spark://HOST:PORT[,...]`` does
    not accept connections (Spark itself retries for a minute and then prints a stack)."""
    if not master.startswith("spark://"):
        return
    problems = []
    for address in master.removeprefix("spark://").split(","):
        parsed = urlparse(f"spark://{address}")
        host, port = parsed.hostname, parsed.port or 7077
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as error:
            problems.append(error.strerror or type(error).__name__)
    raise IpviError(MASTER_UNREACHABLE.format(master=master, why="; ".join(problems)))


@contextmanager
def spark_session(
    config: SparkConfig, report: Callable[[str], None] = logger.info
) -> Iterator[tuple[object, Path]]:
    """A Spark session and a working folder for its Parquet files; both go at the end.

    ``SPARK_REMOTE`` selects Spark Connect; otherwise ``config.master``. Executors start the
    Python that runs this (``PYSPARK_PYTHON``, unless set). ``report`` receives the Spark UI
    address.
    """
    remote = config.remote
    if remote is None:
        if java_executable() is None:
            raise IpviError(JAVA_MISSING)
        check_master(config.master)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise IpviError(PYSPARK_MISSING) from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    work = Path(tempfile.mkdtemp(prefix="ipvi-spark-", dir=config.work_dir))
    builder = SparkSession.builder.appName(config.app_name)
    builder = builder.remote(remote) if remote else builder.master(config.master)
    conf = {**BASE_CONF, "spark.local.dir": str(work / "local")} if not remote else {}
    conf.update({key: str(value) for key, value in config.conf.items()})
    for key, value in conf.items():
        builder = builder.config(key, value)
    start = time.perf_counter()
    try:
        session = builder.getOrCreate()
    except Exception as error:
        shutil.rmtree(work, ignore_errors=True)
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IpviError(SESSION_FAILED.format(why=why)) from None
    try:
        where = remote or config.master
        if not remote:
            ui = session.sparkContext.uiWebUrl
            report(f"spark: {where}, UI {ui or 'disabled'} ({time.perf_counter() - start:.1f} s)")
        else:
            report(f"spark: Spark Connect {where} ({time.perf_counter() - start:.1f} s)")
        yield session, work
    except Exception as error:
        if not _is_spark_error(error):
            raise
        raise IpviError(JOB_FAILED.format(why=_summary(error))) from None
    finally:
        with contextlib.suppress(Exception):  # a JVM that died cannot be stopped
            session.stop()
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def stage(name: str, report: Callable[[str], None]) -> Iterator[None]:
    """Reports ``spark: NAME SECONDS s`` when the block ends: the progress display."""
    start = time.perf_counter()
    yield
    report(f"spark: {name} {time.perf_counter() - start:.1f} s")


def _is_spark_error(error: Exception) -> bool:
    """Whether ``error`` came from Spark or its JVM (a failed job, a lost connection)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return isinstance(error, PySparkException | Py4JError | ConnectionError)


def _summary(error: Exception) -> str:
    """The first informative line of a Spark error, cut to 300 characters: its stack traces,
    which may quote the code and the rows it was running on, stay out of the message."""
    for line in str(error).splitlines():
        line = line.strip().lstrip(": ").strip()
        if line and not line.startswith("An error occurred while calling"):
            return line[:300]
    return type(error).__name__
