"""Intake linking: a new record's identifiers against the registry's persons, in memory.

Wraps :class:`linkage.incremental.LinkIndex` (built by :func:`linkage.run.load_link_index`, which
indexes a confidential address as missing, so the answer for it is the answer for an unknown
one) with what the service owes its callers: candidates carry probabilities and per-field
agreement levels but never stored values; persons at least ``serving.link_victim_share`` of
whose mentions are as a victim are left out unless the caller's key has the ``advocate`` role,
whatever else the registry holds on them; a candidate the registry no longer holds as a current
person (purged since the index was built) is never returned, as each answer is checked against
the registry; and a new linkage run is picked up by a background rebuild (checked every
``serving.link_refresh_seconds``).
"""

from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path

from sqlalchemy import bindparam, case, func, select

from ipvi.tables.ingest import mentions
from ipvi.tables.linkage import crosswalk, persons
from serving.http import ApiError
from serving.link_index import last_purge, latest_run_id, shared_index
from serving.schemas import LinkCandidate, LinkRequest

logger = logging.getLogger(__name__)

INDEX_NOT_READY = "the link index is still being built; retry shortly"


def victim_persons(session, share: float) -> frozenset[str]:
    """Persons at least ``share`` of whose mentions have the role ``victim``."""
    as_victim = func.sum(case((mentions.c.role == "victim", 1), else_=0))
    rows = session.execute(
        select(crosswalk.c.person_id)
        .join(mentions, mentions.c.record_id == crosswalk.c.record_id)
        .group_by(crosswalk.c.person_id)
        .having(as_victim >= share * func.count())
    )
    return frozenset(row.person_id for row in rows)


# Built once: the check every /v1/link answer goes through.
_CURRENT = select(persons.c.person_id).where(
    persons.c.person_id.in_(bindparam("person_ids", expanding=True)),
    persons.c.status == "active",
)


def current_persons(session, person_ids: list[str]) -> set[str]:
    """Which of ``person_ids`` the registry holds as active (not retired, not purged) now."""
    if not person_ids:
        return set()
    return set(session.execute(_CURRENT, {"person_ids": person_ids}).scalars())


class IntakeLinker:
    """The current link index of one worker, reloaded in the background after a new run.

    Parameters
    ----------
    engine : Engine
        The registry.
    linkage_config : LinkageConfig
        Comparisons, blocking and thresholds (the batch run's).
    refresh_seconds : float
        How often the latest linkage run is checked.
    index_dir : Path
        Where the index file the workers share is kept (:mod:`serving.link_index`).
    victim_share : float
        ``serving.link_victim_share``.

    Attributes
    ----------
    state : str
        ``building``, ``loaded``, ``no linkage run`` or ``failed: <error>`` (for /readyz).
    """

    SERVING_STATES = frozenset({"building", "loaded", "no linkage run"})

    def __init__(
        self, engine, refresh_seconds: float, index_dir: Path, victim_share: float
    ) -> None:
        self.engine = engine
        self.refresh_seconds = refresh_seconds
        self.index_dir = Path(index_dir)
        self.victim_share = victim_share
        self.state = "building"
        self._state: tuple | None = None  # (index, victims, run_id, last purge)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Build the index in a daemon thread and keep it current."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ipvi-link", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as error:  # no linked data yet, or database down: try again later
                logger.warning("link index not (re)built: %s: %s", type(error).__name__, error)
                if self._state is None:
                    self.state = f"failed: {type(error).__name__}"
            if self._stop.wait(self.refresh_seconds):
                return

    def refresh(self) -> bool:
        """Reload when the latest linkage run, or the last purge, differs from the indexed one."""
        from ipvi.db import session_scope

        with session_scope(self.engine) as session:
            run_id, purged = latest_run_id(session), last_purge(session)
        if run_id is None:
            self.state = "no linkage run"
            return False
        if self._state is not None and self._state[2:] == (run_id, purged):
            return False
        if self._state is None:
            self.state = "building"
        index = shared_index(self.index_dir, run_id, purged)
        with session_scope(self.engine) as session:
            victims = victim_persons(session, self.victim_share)
        self._state = (index, victims, run_id, purged)
        self.state = "loaded"
        # The index lives until the next linkage run: out of the collector's full passes,
        # which would otherwise rescan its million references during every large request.
        gc.freeze()
        logger.info("link index built for linkage run %s", run_id)
        return True

    @property
    def run_id(self) -> str | None:
        return self._state[2] if self._state else None

    async def link(self, request: LinkRequest, *, advocate: bool, guard) -> dict:
        """Candidate persons for ``request``: those the registry still holds as current
        persons (checked through ``guard``, :class:`serving.runtime.DatabaseGuard`), and
        victims only for advocates.

        Returns the fields of :class:`~serving.schemas.LinkResponse` but the model version.
        """
        if self._state is None:
            raise ApiError(503, INDEX_NOT_READY, retry_after=5)
        index, victims, run_id, _ = self._state
        mention = request.model_dump()
        match = index.link(mention)
        shown = [c for c in match.candidates if advocate or c["person_id"] not in victims]
        current = await guard.transaction(current_persons, [c["person_id"] for c in shown])
        candidates = [
            LinkCandidate(
                person_id=c["person_id"],
                match_probability=c["probability"],
                agreement=c["agreement"],
            )
            for c in shown
            if c["person_id"] in current
        ]
        threshold = index.link_threshold_
        best = (
            candidates[0].person_id
            if candidates and candidates[0].match_probability >= threshold
            else None
        )
        return {"person_id": best, "candidates": candidates, "linkage_run_id": run_id}

    def close(self) -> None:
        self._stop.set()
