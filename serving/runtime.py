"""What one service worker holds: configuration, registry engine, keys, spools, model.

One :class:`Runtime` per worker process, built on first use by :func:`get_runtime` and shared
by the middlewares and the BentoML service class. Database work goes through
:class:`DatabaseGuard`, which answers 503 with ``Retry-After`` within
``serving.db_timeout_seconds`` when the registry is unreachable or locked, instead of hanging,
and never commits a transaction whose request was already answered 503.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, exc, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from ipvi.config import Config, load_config
from ipvi.db import make_engine, session_scope, upgrade_to_head
from ipvi.reaudits import score_warning, standing
from ipvi.site_key import SiteKey, load_site_key
from ipvi.tables.serving import audit_chain_head
from serving.audit_log import AuditSpool, last_checks
from serving.auth import KeyCache, TokenBucket, active_keys
from serving.http import ApiError
from serving.linking import IntakeLinker
from serving.model import load_scorer
from serving.refresh import Refreshed
from serving.spool import ISSUED_FOLDER, IssuedScoreSpool

logger = logging.getLogger(__name__)

T = TypeVar("T")
MODEL_VERSION_ENV = "IPVI_SERVING_MODEL_VERSION"
DB_UNREACHABLE = "the registry database is unreachable or locked; retry later"
# Errors meaning "cannot talk to the database (or wait for its lock)", not a bad query.
_UNREACHABLE_ERRORS = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


def registry_engine(url: str, lock_wait_seconds: float) -> Engine:
    """The registry engine; on PostgreSQL a connect timeout keeps a dead server from hanging,
    and on both engines a statement waits for a lock at most ``lock_wait_seconds``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": "2"})
    return make_engine(
        parsed.render_as_string(hide_password=False), lock_wait_seconds=lock_wait_seconds
    )


class _Cancelled(Exception):
    """The transaction's request was answered before it could commit: rolled back."""


class _Ticket:
    """Who decides a transaction's fate: the request (it may cancel, until the commit begins)
    or the database thread (it may commit, unless cancelled). Exactly one of them wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "pending"  # -> committing | cancelled

    def may_commit(self) -> bool:
        with self._lock:
            if self._state == "pending":
                self._state = "committing"
            return self._state == "committing"

    def cancel(self) -> bool:
        with self._lock:
            if self._state == "pending":
                self._state = "cancelled"
            return self._state == "cancelled"


class DatabaseGuard:
    """Runs database transactions off the event loop with a deadline and a circuit breaker.

    A transaction that misses the deadline is cancelled: the request is answered 503 and the
    transaction rolls back, even if the database would have let it through a moment later. Only
    a transaction whose commit had already begun is waited for, and answered as committed. So
    an answer and what the registry (and the audit log) holds always agree.

    After a call times out or cannot connect, the database is marked unreachable: calls fail at
    once with 503 until a background probe (every ``probe_seconds``) reaches it again.

    Parameters
    ----------
    engine : Engine
        The registry engine.
    timeout_seconds : float
        Deadline of one call.
    retry_after_seconds : int
        ``Retry-After`` of the 503 answers.
    probe_seconds : float
        Probe interval while unreachable.
    """

    def __init__(
        self,
        engine: Engine,
        timeout_seconds: float,
        retry_after_seconds: int,
        probe_seconds: float,
    ) -> None:
        self.engine = engine
        self.timeout_seconds = timeout_seconds
        self.retry_after_seconds = retry_after_seconds
        self.probe_seconds = probe_seconds
        self._available = True
        self._lock = threading.Lock()
        self._prober: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ipvi-db")
        self._sessions = sessionmaker(bind=engine)

    @property
    def available(self) -> bool:
        return self._available

    def unavailable(self) -> ApiError:
        return ApiError(503, DB_UNREACHABLE, retry_after=self.retry_after_seconds)

    async def transaction(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(session, *args, **kwargs)`` in one transaction in a worker thread, committed
        only if the answer waits for it; else :class:`ApiError` 503 and a rollback."""
        if not self._available:
            raise self.unavailable()
        ticket = _Ticket()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._pool, functools.partial(self._run, ticket, func, args, kwargs)
        )
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_seconds)
        except TimeoutError:
            if not ticket.cancel():  # the commit had begun: answer with what it did
                return await future
            logger.warning("registry database did not answer within %.1f s", self.timeout_seconds)
        except (_Cancelled, *_UNREACHABLE_ERRORS) as error:
            logger.warning("registry database unreachable: %s", type(error).__name__)
        self.mark_unreachable()
        raise self.unavailable() from None

    def _run(self, ticket: _Ticket, func: Callable[..., T], args, kwargs) -> T:
        session = self._sessions()
        try:
            result = func(session, *args, **kwargs)
            if not ticket.may_commit():
                raise _Cancelled
            session.commit()
            return result
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(session, *args, **kwargs)`` in one committed transaction, synchronously (for
        background threads): marks the database down on failure."""
        try:
            with session_scope(self.engine) as session:
                return func(session, *args, **kwargs)
        except _UNREACHABLE_ERRORS:
            self.mark_unreachable()
            raise

    def mark_unreachable(self) -> None:
        with self._lock:
            self._available = False
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(
                    target=self._probe, name="ipvi-db-probe", daemon=True
                )
                self._prober.start()

    def ping(self) -> bool:
        """Whether a trivial query succeeds now."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure means "not reachable" to a probe
            return False

    def _probe(self) -> None:
        while not self.ping():
            threading.Event().wait(self.probe_seconds)
        logger.info("registry database reachable again")
        self._available = True


def can_write(session: Session) -> bool:
    """Whether a write transaction can begin: takes (and, as the caller rolls back, releases)
    the write lock of the audit chain's head row, which every audit flush needs too. Fails
    after the engine's lock wait when another transaction holds it."""
    session.execute(
        update(audit_chain_head)
        .where(audit_chain_head.c.id == 1)
        .values(seq=audit_chain_head.c.seq)
    )
    session.rollback()
    return True


class Runtime:
    """Per-worker state of the service, built from the configuration.

    Parameters
    ----------
    config : Config
        The validated configuration.
    model_version : str, optional
        A model version to serve instead of the configured alias.
    """

    def __init__(self, config: Config, model_version: str | None = None) -> None:
        self.config = config
        self.model_version = model_version
        self.settings = config.serving
        self.engine: Engine | None = None
        self.guard: DatabaseGuard | None = None
        self.keys: KeyCache | None = None
        self.site_key: SiteKey | None = None
        self.spool: AuditSpool | None = None
        self.issued: IssuedScoreSpool | None = None
        self.rate_limits: dict[str, TokenBucket] = {}
        self.scorer = None
        self.linker: IntakeLinker | None = None
        self.audit: dict[str, str | None] = {}
        self.reaudit: Refreshed[str | None] | None = None
        self._started = False

    def start(self) -> Runtime:
        """Open the registry (migrating it when reachable) and start the background threads."""
        if self._started:
            return self
        settings = self.settings
        # One thread per native library (BLAS, OpenMP) in each worker: requests are small, the
        # workers already share the cores, and idle pool threads spin for milliseconds.
        threadpool_limits(limits=1)
        # First the model and the site key: without them the service refuses to start.
        self.scorer, self.audit = load_scorer(
            self.config.tracking_uri,
            self.config.mlflow.model_name,
            self.model_version or settings.model_alias,
        )
        self.site_key = load_site_key(self.config.paths.audit_key_file, create=True)
        self.engine = registry_engine(
            self.config.database_url, lock_wait_seconds=settings.db_timeout_seconds
        )
        self.guard = DatabaseGuard(
            self.engine,
            timeout_seconds=settings.db_timeout_seconds,
            retry_after_seconds=settings.retry_after_seconds,
            probe_seconds=settings.db_probe_seconds,
        )
        try:
            upgrade_to_head(self.engine)
        except Exception as error:  # the service starts anyway; inline scoring needs no database
            logger.error("registry database not reachable at start: %s", type(error).__name__)
            self.guard.mark_unreachable()
        self.keys = KeyCache(self._load_keys, refresh_seconds=settings.key_cache_seconds)
        self.keys.start()
        # The served version's re-audit standing: read here and in the background, never on
        # a request.
        self.reaudit = Refreshed(
            self._load_reaudit_warning,
            refresh_seconds=settings.reaudit_refresh_seconds,
            name="reaudit-standing",
        )
        self.reaudit.start()
        self.spool = AuditSpool(
            settings.audit_spool_dir,
            engine_getter=lambda: self.engine,
            key=self.site_key,
            flush_seconds=settings.audit_flush_seconds,
        )
        self.spool.start()
        self.issued = IssuedScoreSpool(
            Path(settings.audit_spool_dir) / ISSUED_FOLDER,
            engine_getter=lambda: self.engine,
            flush_seconds=settings.audit_flush_seconds,
        )
        self.issued.start()
        spool_dir = Path(settings.audit_spool_dir)
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.linker = IntakeLinker(
            self.engine,
            refresh_seconds=settings.link_refresh_seconds,
            index_dir=spool_dir,
            victim_share=settings.link_victim_share,
        )
        self.linker.start()
        self.rate_limits = {
            "/v1/link": TokenBucket(
                rate=settings.link_rate_per_second,
                burst=settings.link_burst,
                path=spool_dir / "rate_limits.sqlite",
            )
        }
        # Everything loaded so far lives as long as the worker: leave it out of the garbage
        # collector's full passes, which otherwise rescan it while a large batch is answered.
        gc.freeze()
        self._started = True
        return self

    def _load_keys(self):
        return self.guard.call(active_keys)

    def _load_reaudit_warning(self) -> str | None:
        return score_warning(self.guard.call(standing, self.scorer.model_version))

    def score_warnings(self) -> list[str]:
        """The warnings every score answered now carries: the failed re-audit of the served
        version, while it stands (:mod:`ipvi.reaudits`)."""
        warning = self.reaudit.value if self.reaudit is not None else None
        return [warning] if warning else []

    def close(self) -> None:
        """Flush the audit and issued-score spools; rows stay spooled when the database is
        down."""
        if self.linker is not None:
            self.linker.close()
        for spool in (self.spool, self.issued):
            if spool is not None:
                spool.close()
        if self.engine is not None:
            self.engine.dispose()

    async def database_state(self) -> str:
        """``ok`` when a write transaction can begin within ``serving.db_timeout_seconds``,
        else ``unreachable or locked``, as /readyz reports it."""
        if self.guard is None:
            return "unreachable or locked"
        try:
            await self.guard.transaction(can_write)
        except ApiError:
            return "unreachable or locked"
        except Exception as error:  # not a registry at all (a damaged file, a wrong schema)
            return f"unusable: {type(error).__name__}"
        return "ok"

    async def audit_checks(self) -> dict:
        """The last ``ipvi audit-log verify`` and the age of the last checkpoint (/readyz)."""
        try:
            checks = await self.guard.transaction(last_checks)
        except ApiError:
            return {"last_verification": None, "checkpoint_age_seconds": None}
        verified, checkpoint = checks["verify"], checks["checkpoint"]
        now = datetime.now(UTC).replace(tzinfo=None)
        return {
            "last_verification": None
            if verified is None
            else {
                "at": verified["checked_at"].isoformat(timespec="seconds") + "Z",
                "ok": verified["ok"],
                "first_bad_seq": verified["first_bad_seq"],
            },
            "checkpoint_age_seconds": None
            if checkpoint is None
            else round((now - checkpoint["checked_at"]).total_seconds()),
        }

    async def readiness(self) -> tuple[bool, dict]:
        """Whether this worker is ready, and the report /readyz shows.

        Ready when the champion and the site key are loaded (else the worker would not have
        started), the API keys could be read, a write transaction can begin in time (unless
        ``serving.readyz_requires_database`` is false), and the link index is loaded or being
        built (or there is no linkage run to index yet).
        """
        database = await self.database_state()
        keys_loaded = bool(self.keys and self.keys.loaded)
        link_index = self.linker.state if self.linker else "not started"
        ready = (
            self._started
            and self.scorer is not None
            and keys_loaded
            and (database == "ok" or not self.settings.readyz_requires_database)
            and link_index in IntakeLinker.SERVING_STATES
        )
        report = {
            "status": "ready" if ready else "not ready",
            "database": database,
            "api_keys_loaded": keys_loaded,
            "model_name": self.scorer.model_name if self.scorer else None,
            "model_version": self.scorer.model_version if self.scorer else None,
            "link_index": link_index,
            "linkage_run_id": self.linker.run_id if self.linker else None,
            "audit_key_id": self.site_key.key_id if self.site_key else None,
            "audit_rows_spooled": self.spool.pending_rows() if self.spool else 0,
            "audit_log": await self.audit_checks() if database == "ok" else None,
        }
        return ready, report


@functools.cache
def get_runtime() -> Runtime:
    """This worker's runtime, started on first use."""
    config = load_config()
    version = os.environ.get(MODEL_VERSION_ENV) or config.serving.model_version
    return Runtime(config, model_version=version).start()
