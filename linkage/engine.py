"""The linkage engine of a run: the local :class:`~linkage.linker.Linker`, or the same linker
with its pair-heavy steps in Spark (:mod:`linkage.spark`), chosen by ``linkage.engine`` or
``--engine``. pyspark is imported only when Spark is chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ipvi.config import SparkConfig
from linkage.linker import Linker
from linkage.settings import LinkageSettings

logger = logging.getLogger(__name__)

ENGINES = ("local", "spark")


def chosen_engine(engine: str | None, configured: str) -> str:
    """``engine``, else the configured ``linkage.engine`` (``configured``); one of
    :data:`ENGINES`, or a ValueError."""
    engine = engine or configured
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: give one of {', '.join(ENGINES)}")
    return engine


@contextmanager
def open_linker(
    settings: LinkageSettings,
    engine: str | None = None,
    spark: SparkConfig | None = None,
    report: Callable[[str], None] = logger.info,
) -> Iterator[Linker]:
    """A linker for ``engine`` (default ``settings.config.engine``); a Spark session lives
    as long as the block. ``report`` receives the Spark UI address and each stage's time."""
    engine = chosen_engine(engine, settings.config.engine)
    if engine == "local":
        yield Linker(settings)
        return
    from linkage.spark.linker import SparkLinker
    from linkage.spark.session import spark_session

    with spark_session(spark or SparkConfig(), report) as (session, work_dir):
        yield SparkLinker(settings, session, work_dir, report)
