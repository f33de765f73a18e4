"""The local history: every tracked operation, kept in a SQLite file that outlives the kernel.

One row per (service, name): kind, model, first and last seen, the last snapshot (the JSON the
service sent, with the client's own key cut out), the state, and once done how long it ran. The
file is in OPS_WIDGETS_HOME, else the platform's user data folder; OPS_WIDGETS_HISTORY=0 (or
``history=False`` on a client) turns it off.

    Store      one per file and process: a writer thread, short read connections
     └── Recorder  one per client: its service key, its secrets and its clock

Writes never run on the event loop: a record is a queue put, and the writer thread turns what
has piled up into one short transaction (WAL, busy timeout), the newest snapshot of each name
winning. Several processes share the file: each upsert keeps the newest snapshot and the earliest
first sighting, so two kernels tracking at once lose nothing. A corrupt or locked file never
breaks tracking: one warning on the "ops_widgets" logger, and polling goes on without it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._clock import Clock
from ._frame import to_dataframe
from ._schedule import Key
from ._transport import Secret, redact_json
from ._types import Operation, State

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ENV_HOME", "ENV_SWITCH", "FILENAME", "LEARN_FROM", "LEARN_MIN", "NoHistory", "Recorder", "Store",
           "default_path", "service_key", "store_for", "wanted"]

logger = logging.getLogger("ops_widgets")

ENV_HOME = "OPS_WIDGETS_HOME"
ENV_SWITCH = "OPS_WIDGETS_HISTORY"
FILENAME = "history.sqlite3"
LEARN_FROM = 5  # finished runs per (kind, model) whose median is its typical duration
LEARN_MIN = 3  # fewer say too little: the kind's built-in prior stands
_WRITE_BUSY_MS = 2000  # the writer thread may wait this long for another process's transaction
_READ_BUSY_MS = 500  # a read on behalf of a caller waits less
_IDLE = 2.0  # seconds the writer thread lingers with nothing to write before it ends
_RETRY = 1.0  # seconds between two tries to write what a locked file refused
# Seconds the writer lets sightings pile up after a write (a flush cuts it short): a name polled
# ten times meanwhile costs one row written, and polling at full speed (a virtual clock) is not
# slowed by a write per poll. A kernel killed meanwhile loses at most this much of what it saw.
_GATHER = 0.2
_OFF = {"0", "false", "no", "off"}
_MAX_SECONDS = 9e9  # what a timedelta64[ns] holds (292 years), with room: server times can be anything
_LEARN_STATES = (State.SUCCEEDED.value, State.FILTERED.value)  # runs that went the whole way

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    service     TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    model       TEXT,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    last_running REAL,
    done        INTEGER NOT NULL,
    state       TEXT NOT NULL,
    snapshot    TEXT NOT NULL,
    duration    REAL,
    finished_at REAL,
    vanished    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service, name)
);
CREATE INDEX IF NOT EXISTS operations_finished ON operations (service, kind, model, finished_at);
"""

# Newest snapshot wins (another process may write an older one late); the first sighting is the
# earliest; a run seen running and then done, with no times of its own, ended about halfway
# between the last poll that saw it running and the first that saw it done.
_UPSERT = """
INSERT INTO operations (service, name, kind, model, first_seen, last_seen, last_running, done, state,
                        snapshot, duration, finished_at, vanished)
VALUES (:service, :name, :kind, :model, :first_seen, :last_seen, :last_running, :done, :state,
        :snapshot, coalesce(:duration, CASE WHEN :done = 1 THEN (:last_running + :finished_at) / 2 - :first_seen END),
        :finished_at, 0)
ON CONFLICT (service, name) DO UPDATE SET
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = excluded.last_seen,
    last_running = coalesce(excluded.last_running, last_running),
    kind = excluded.kind,
    model = excluded.model,
    done = excluded.done,
    state = excluded.state,
    snapshot = excluded.snapshot,
    duration = coalesce(:duration,
                        CASE WHEN done = 0 AND :done = 1 THEN
                            (coalesce(:last_running, last_running, first_seen) + :finished_at) / 2
                            - min(first_seen, :first_seen) END,
                        duration),
    finished_at = coalesce(finished_at, excluded.finished_at),
    vanished = 0
WHERE excluded.last_seen >= last_seen
"""
_VANISH = """
UPDATE operations SET vanished = 1, last_seen = max(last_seen, :when) WHERE service = :service AND name = :name
"""


def wanted(requested: bool) -> bool:
    """Whether a client keeps a history: asked for, and not turned off in the environment."""
    return requested and os.environ.get(ENV_SWITCH, "").strip().lower() not in _OFF


def default_path() -> Path:
    """The history file: in OPS_WIDGETS_HOME, else the platform's user data folder."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser() / FILENAME
    import platformdirs  # lazy: only clients that keep a history pay for it

    return Path(platformdirs.user_data_dir("ops-widgets", appauthor=False)) / FILENAME


def service_key(api: str, base_url: str, api_version: str, *, project: str | None = None,
                location: str | None = None) -> str:
    """Which service the names belong to, with no credential in it: "gemini:host[:port]/v1beta"
    (the scheme, any user:password and any query are left out). Vertex adds project and location."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    path = parts.path.strip("/")
    where = "/".join(p for p in (host, path, api_version) if p)
    if project is not None or location is not None:
        where += f"/projects/{project or '-'}/locations/{location or '-'}"
    return f"{api}:{where}"


@dataclass
class _Row:
    """What one name's newest sightings say, merged while they wait to be written (the snapshot
    is laid out as text only then: a name polled often costs one dump per write, not per poll)."""

    recorder: Recorder
    op: Operation
    first_seen: float
    last_seen: float
    last_running: float | None  # the last of these sightings that saw it running
    first_done: float | None  # the first of them that saw it done

    def params(self) -> dict[str, Any]:
        """The upsert's parameters. ``duration`` is the run's own (its times) or None: without
        them the SQL works it out from the sightings, the earlier ones already written included."""
        op, done = self.op, self.op.done
        duration = op.run_seconds(self.last_seen) if done else None
        snapshot = redact_json(json.dumps(op.raw, separators=(",", ":")), self.recorder.secrets)
        return {
            "service": self.recorder.service, "name": op.name, "kind": op.kind, "model": op.model,
            "first_seen": self.first_seen, "last_seen": self.last_seen, "last_running": self.last_running,
            "done": int(done),
            "state": op.state.value, "snapshot": snapshot, "duration": duration,
            "finished_at": self.first_done if done else None,
        }


class Store:
    """One history file. ``put`` and ``vanish`` are cheap and safe from any thread; reads open
    a short connection of their own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.broken = False  # the file is not a database we can use: records are dropped
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()  # a flush is waiting: write now
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"<Store {str(self.path)!r}{' broken' if self.broken else ''}>"

    # -- writing (the writer thread) ------------------------------------------------------

    def put(self, recorder: Recorder, op: Operation, when: float) -> None:
        if not self.broken:
            self._queue.put(("seen", recorder, op, when))
            self._ensure_writer()

    def vanish(self, service: str, name: str, when: float) -> None:
        if not self.broken:
            self._queue.put(("vanished", service, name, when))
            self._ensure_writer()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until what was put before has been written (or tried); False on timeout."""
        if self.broken:
            return True
        with self._lock:
            if self._thread is None and self._queue.empty():
                return True  # nothing was put since the last writer ended
        done = threading.Event()
        self._queue.put(("flush", done))
        self._ensure_writer()
        self._wake.set()
        return done.wait(timeout)

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_loop, name="ops-widgets history",
                                                daemon=True)
                self._thread.start()

    def _write_loop(self) -> None:
        conn: sqlite3.Connection | None = None
        rows: dict[tuple[str, str], _Row] = {}
        gone: dict[tuple[str, str], float] = {}
        try:
            while True:
                try:
                    items = [self._queue.get(timeout=_RETRY if rows or gone else _IDLE)]
                except queue.Empty:
                    items = []
                with self._lock:
                    if not items and not rows and not gone and self._queue.empty():
                        self._thread = None  # the next put starts a new one
                        return
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                flushes: list[threading.Event] = []
                for item in items:
                    if item[0] == "seen":
                        _merge(rows, *item[1:])
                    elif item[0] == "vanished":
                        gone[(item[1], item[2])] = item[3]
                    else:
                        flushes.append(item[1])
                if (rows or gone) and not self.broken:
                    if conn is None:
                        conn = self._connect(_WRITE_BUSY_MS)
                    if conn is not None and self._write(conn, rows, gone):
                        rows, gone = {}, {}
                if self.broken:
                    rows, gone = {}, {}
                for event in flushes:
                    event.set()
                if not flushes:
                    self._wake.wait(_GATHER)
                self._wake.clear()
        finally:
            if conn is not None:
                conn.close()

    def _write(self, conn: sqlite3.Connection, rows: dict[tuple[str, str], _Row],
               gone: dict[tuple[str, str], float]) -> bool:
        try:
            with conn:  # one short transaction for all that piled up
                conn.executemany(_UPSERT, [row.params() for row in rows.values()])
                conn.executemany(_VANISH, [{"service": s, "name": n, "when": w} for (s, n), w in gone.items()])
        except sqlite3.Error as exc:
            self._trouble(exc)
            return False
        return True

    # -- reading (the caller's thread) ------------------------------------------------------

    def rows(self, service: str | None) -> list[tuple[Any, ...]]:
        """(service, snapshot, first_seen, last_seen, vanished, duration) of every row (of ``service``),
        the most recently seen first."""
        sql = "SELECT service, snapshot, first_seen, last_seen, vanished, duration FROM operations"
        where = " WHERE service = ?" if service is not None else ""
        return self._read(sql + where + " ORDER BY last_seen DESC", () if service is None else (service,))

    def unfinished(self, service: str) -> list[str]:
        """Names of ``service`` not done when last seen and not gone, oldest first."""
        found = self._read("SELECT name FROM operations WHERE service = ? AND done = 0 AND vanished = 0 "
                           "ORDER BY first_seen, name", (service,))
        return [name for (name,) in found]

    def runs(self, service: str) -> dict[Key, list[float]]:
        """The durations of the last LEARN_FROM finished runs of each (kind, model) that has at
        least LEARN_MIN, the most recent first."""
        found = self._read(
            "SELECT kind, model, duration FROM (SELECT kind, model, duration, row_number() OVER "
            "(PARTITION BY kind, model ORDER BY finished_at DESC) AS n FROM operations WHERE service = ? "
            f"AND done = 1 AND vanished = 0 AND duration > 0 AND state IN {_LEARN_STATES!r}) WHERE n <= ?",
            (service, LEARN_FROM),
        )
        runs: dict[Key, list[float]] = {}
        for kind, model, duration in found:
            runs.setdefault((kind, model), []).append(float(duration))
        return {key: values for key, values in runs.items() if len(values) >= LEARN_MIN}

    def _read(self, sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        if self.broken or not self.path.exists():
            return []  # nothing recorded yet: no file is made for reading
        conn = self._connect(_READ_BUSY_MS)
        if conn is None:
            return []
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            self._trouble(exc)
            return []
        finally:
            conn.close()

    # -- the file ---------------------------------------------------------------------------------

    def _connect(self, busy_ms: int) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=busy_ms / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.isolation_level = "DEFERRED"  # `with conn` opens a transaction, commits or rolls back
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for a writer
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL keeps it consistent; a crash may lose the last
            conn.executescript(_SCHEMA)
            return conn
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            self._trouble(exc)
            return None

    def _trouble(self, exc: Exception) -> None:
        """A locked file is tried again later; anything else (not a database, unreadable, a
        schema we cannot use) turns the history off for this process. One warning each."""
        text = str(exc)
        locked = isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)
        if not locked:
            self.broken = True
        kind = "locked" if locked else "broken"
        if kind in self._warned:
            return
        self._warned.add(kind)
        if locked:
            logger.warning("the operations history %s is locked by another program (%s); tracking goes "
                           "on, and what it saw is written when the lock is released", self.path, text)
        else:
            logger.warning("the operations history %s cannot be used (%s: %s); tracking goes on without "
                           "it (move the file away to start a new one, or set %s=0)",
                           self.path, type(exc).__name__, text, ENV_SWITCH)


def _merge(rows: dict[tuple[str, str], _Row], recorder: Recorder, op: Operation, when: float) -> None:
    key = (recorder.service, op.name)
    row = rows.get(key)
    running, done = (when, None) if not op.done else (None, when)
    if row is None:
        rows[key] = _Row(recorder, op, when, when, running, done)
        return
    row.first_seen = min(row.first_seen, when)
    if running is not None:
        row.last_running = max(row.last_running or running, running)
    if done is not None:
        row.first_done = min(row.first_done or done, done)
    if when >= row.last_seen:
        row.op, row.last_seen = op, when


_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def store_for(path: Path | None = None) -> Store:
    """The process's Store of ``path`` (default: default_path())."""
    path = (path or default_path()).resolve()
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = Store(path)
        return store


def _forget_after_fork() -> None:
    # A forked child has none of its parent's threads: its stores start afresh.
    global _stores_lock
    _stores.clear()
    _stores_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _flush_all() -> None:
    # The writer is a daemon thread: write what is queued before the interpreter goes.
    for store in list(_stores.values()):
        store.flush(timeout=5.0)


class Recorder:
    """What one client records into the history: snapshots it saw, names that are gone."""

    def __init__(self, store: Store, service: str, *, secrets: list[Secret], clock: Clock) -> None:
        self.store = store
        self.service = service
        self.secrets = secrets
        self.clock = clock

    def __repr__(self) -> str:
        return f"<Recorder {self.service!r} in {self.store!r}>"

    def seen(self, op: Operation) -> None:
        """``op`` was seen now (on the loop: a queue put)."""
        self.store.put(self, op, self.clock.time())

    def vanished(self, name: str) -> None:
        """The service says ``name`` is not there (404): it is not tracked again."""
        self.store.vanish(self.service, name, self.clock.time())

    def runs(self) -> dict[Key, list[float]]:
        """Recent finished runs per (kind, model), for the adaptive schedule's priors."""
        self.store.flush(timeout=1.0)  # this process's own finished runs count too
        return self.store.runs(self.service)

    def unfinished(self) -> list[str]:
        self.store.flush()
        return self.store.unfinished(self.service)

    def frame(self, *, all_services: bool = False, flatten_metadata: bool = False) -> pd.DataFrame:
        """The history as to_dataframe() lays it out, plus service, first_seen, last_seen
        (datetime64[ns, UTC]) and vanished; the most recently seen first."""
        import pandas as pd

        self.store.flush()
        rows = self.store.rows(None if all_services else self.service)
        ops, kept = [], []
        for row in rows:
            try:
                ops.append(Operation.from_api_response(json.loads(row[1])))
            except ValueError:  # a row another version (or a hand) wrote badly: left out
                continue
            kept.append(row)
        frame = to_dataframe(ops, flatten_metadata=flatten_metadata)

        def utc(values: list[float]) -> pd.Series:
            seconds = pd.Series(values, dtype="float64", index=frame.index)
            out: pd.Series = pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[ns, UTC]")
            return out

        first_seen, last_seen = utc([r[2] for r in kept]), utc([r[3] for r in kept])
        # Not done: how long it had run when last seen (not until now: nothing may watch it now).
        # Done with no times of its own: how long it was seen to run, where it was.
        ran = [r[5] if op.done else op.run_seconds(r[3]) for op, r in zip(ops, kept, strict=True)]
        ran = [None if x is None or not abs(x) < _MAX_SECONDS else x for x in ran]
        seen = pd.to_timedelta(pd.Series(ran, dtype="float64", index=frame.index), unit="s")
        done = frame["done"].astype(bool)
        frame["duration"] = frame["duration"].where(done, seen).fillna(seen)
        extra = {
            "service": pd.array([r[0] for r in kept], dtype="string"),
            "first_seen": first_seen.array,
            "last_seen": last_seen.array,
            "vanished": pd.array([bool(r[4]) for r in kept], dtype=bool),
        }
        at = list(frame.columns).index("model") + 1  # after to_dataframe's own columns
        for offset, (column, values) in enumerate(extra.items()):
            frame.insert(at + offset, column, values)
        return frame


class NoHistory:
    """A client's recorder when the history is off: records nothing."""

    service = ""

    def seen(self, op: Operation) -> None:
        pass

    def vanished(self, name: str) -> None:
        pass

    def runs(self) -> dict[Key, list[float]]:
        return {}
