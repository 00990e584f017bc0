"""SQLite history of run records (`reports/runs/<run-id>/result.json`), queried as pandas DataFrames.

One row per run in `runs` (keyed by run_id; re-importing the same record is a no-op, a changed record
replaces the old one), plus `checks`, `ranks` and `steps`. Each run is written in one transaction (an
import commits every IMPORT_BATCH runs, each run in a savepoint of its own), so a crash mid-write leaves
earlier history intact, and the runs of a lost batch are read again by the next import. The database is
a plain path or an SQLAlchemy-style URL (`sqlite:///relative.sqlite`, `sqlite:////abs/path.sqlite`); only
sqlite is supported for now.

Import is recursive over several roots (run folders from many machines, rsynced or downloaded as CI
artefacts into one tree) and incremental: `files` keeps each imported result.json's path, size and mtime,
so a file seen before is skipped on a stat alone, and re-importing a year of runs reads only the new ones.
Schema 2 (migrated from 1 in place) adds that table and the run's host and Paddle commit columns.

Each record is validated at the boundary (swavbench.harness.records): strict JSON, typed fields, bounded
depth and size, every text cut to inputs.MAX_STORED; a bad record is skipped and reported (exit 3). A full
or read-only disk under the database is an EnvironmentProblem (exit 6), a file that is not a database a
usage error (exit 3).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import pandas as pd

from swavbench.errors import EXIT_USAGE, EnvironmentProblem, SwavbenchError, from_os_error
from swavbench.harness.records import RECORD_SCHEMA_VERSION, RecordError, read_record_json
from swavbench.harness.records import validate_record as _validate_record
from swavbench.paths import home

SCHEMA_VERSION = 2  # of the database; bump with a migration in _migrate

IMPORT_BATCH = 256  # runs per transaction during an import (one fsync per batch, not per run)

STATUSES = ("pass", "regression", "failed", "no_baseline")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, config TEXT, profile TEXT, device_profile TEXT,
  started_utc TEXT, finished_utc TEXT, duration_s REAL, commit_sha TEXT, paddle_version TEXT,
  status TEXT NOT NULL, exit_code INTEGER, message TEXT, advice TEXT,
  marker TEXT, loss TEXT, loss_value REAL, ips REAL, max_mem TEXT, max_mem_value REAL,
  baseline_loss TEXT, baseline_loss_value REAL, baseline_ips REAL, baseline_max_mem TEXT,
  baseline_max_mem_value REAL, ips_tol_pct REAL, baseline_run_id TEXT, baseline_path TEXT,
  device TEXT, world_size INTEGER, nnodes INTEGER, precision_requested TEXT, precision_effective TEXT,
  precision_note TEXT, failure_kind TEXT, failure_rank INTEGER, failure_message TEXT,
  record_schema_version INTEGER, source TEXT, digest TEXT NOT NULL, imported_utc TEXT NOT NULL,
  record_json TEXT NOT NULL, host TEXT, paddle_commit TEXT, ips_steady REAL
);
CREATE INDEX IF NOT EXISTS runs_by_case ON runs (case_id, profile, started_utc);
CREATE TABLE IF NOT EXISTS files (
  path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, run_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checks (
  run_id TEXT NOT NULL, idx INTEGER NOT NULL, metric TEXT, baseline TEXT, measured TEXT, diff TEXT,
  tolerance TEXT, verdict TEXT, PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS ranks (
  run_id TEXT NOT NULL, rank INTEGER NOT NULL, exit_code INTEGER, last_step INTEGER,
  reached_marker INTEGER, ips REAL, log_tail TEXT, PRIMARY KEY (run_id, rank)
);
CREATE TABLE IF NOT EXISTS steps (
  run_id TEXT NOT NULL, rank INTEGER NOT NULL, step INTEGER, epoch INTEGER, iter INTEGER,
  loss REAL, lr REAL, batch_cost REAL, reader_cost REAL
);
CREATE INDEX IF NOT EXISTS steps_by_run ON steps (run_id, rank, step);
"""

_RUN_COLUMNS = """run_id, case_id AS "case", config, profile, device_profile, started_utc, finished_utc,
  duration_s, commit_sha AS "commit", paddle_version, status, exit_code, message, advice, marker, loss,
  loss_value, ips, max_mem, max_mem_value, baseline_loss, baseline_loss_value, baseline_ips,
  baseline_max_mem, baseline_max_mem_value, ips_tol_pct, baseline_run_id, baseline_path, device,
  world_size, nnodes, precision_requested, precision_effective, precision_note, failure_kind,
  failure_rank, failure_message, record_schema_version, source, host, paddle_commit, ips_steady"""

# Schema 1 -> 2: the columns added to `runs`, filled from the stored record (`files` is created by _SCHEMA).
_MIGRATE_1_TO_2 = """
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN paddle_commit TEXT;
ALTER TABLE runs ADD COLUMN ips_steady REAL;
UPDATE runs SET host = json_extract(record_json, '$.environment.hostname'),
  paddle_commit = coalesce(json_extract(record_json, '$.paddle_commit'),
                           json_extract(record_json, '$.environment.paddle_commit')),
  ips_steady = coalesce(json_extract(record_json, '$.ips_steady.rate'),
                        json_extract(record_json, '$.ips_steady.median'));
"""


__all__ = ["RECORD_SCHEMA_VERSION", "History", "ImportSummary", "RecordError", "import_runs", "validate_record"]
# sqlite messages that say "this disk / folder", not "this file": exit 6
_ENVIRONMENT_DB_ERRORS = ("disk is full", "readonly database", "unable to open", "disk I/O error",
                          "database is locked", "out of memory")


def _db_error(err: Exception, path: str, doing: str) -> SwavbenchError:
    """One line for an sqlite error: exit 6 for a full / read-only / unwritable disk, else 3."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if any(s in text for s in _ENVIRONMENT_DB_ERRORS):
        return EnvironmentProblem(f"history database {path}: {doing}: {text} (disk full, read-only or not "
                                  "writable? free space or use --db on a writable disk)")
    return SwavbenchError(f"history database {path}: {doing}: {text} (not a swavbench history? move it away "
                          "and rerun to start a new one)", EXIT_USAGE)


@dataclass
class ImportSummary:
    """What `import_runs` did: run_ids written or left unchanged, files skipped with the reason."""

    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[str] = field(default_factory=list)

    seen_by_stat: int = 0  # of `unchanged`: skipped on (size, mtime) without reading the file

    def line(self) -> str:
        """One line for people: counts of imported / unchanged / skipped records."""
        return (
            f"imported {len(self.imported)} run(s), {len(self.unchanged)} unchanged, "
            f"{len(self.failed)} skipped (corrupt)"
        )


def resolve_db(db: Union[str, Path]) -> str:
    """A filesystem path (or ':memory:') from a plain path or an SQLAlchemy-style `sqlite://` URL."""
    text = str(db)
    if "://" not in text:
        return text
    scheme, _, rest = text.partition("://")
    if scheme.split("+")[0].lower() != "sqlite":
        raise SwavbenchError(f"history database {text!r}: only sqlite is supported now (use a path or sqlite:///path)")
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise SwavbenchError(f"history database {text!r}: expected sqlite:///relative or sqlite:////absolute")
    return rest[1:].split("?")[0]


def utc_text(value: Any) -> Optional[str]:
    """An ISO timestamp or date as 'YYYY-MM-DDTHH:MM:SSZ' in UTC; unparseable text is returned as is."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return text
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(since: str) -> str:
    """`--since` (a date or ISO time; UTC unless it says otherwise) as a UTC timestamp text."""
    try:
        datetime.fromisoformat(str(since).strip().replace("Z", "+00:00"))
    except ValueError:
        raise SwavbenchError(f"--since {since!r}: expected a date like 2026-11-28 or 2026-11-28T20:00:00Z") from None
    return str(utc_text(since))


def _num(value: Any) -> Optional[float]:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> Optional[int]:
    number = _num(value)
    return int(number) if number is not None else None


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _run_row(rec: dict, source: str, digest: str, imported_utc: str) -> dict:
    """The `runs` row of a validated record; missing or unreadable fields become NULL."""
    metrics, env, failure = _dict(rec.get("metrics")), _dict(rec.get("environment")), _dict(rec.get("failure"))
    base = _dict(rec.get("baseline"))
    bmetrics, btol, bprov = _dict(base.get("metrics")), _dict(base.get("tolerances")), _dict(base.get("provenance"))
    light = {k: v for k, v in rec.items() if k not in ("steps", "log_lines")}
    steady = _dict(rec.get("ips_steady"))
    # fmt: off
    return {
        "run_id": rec["run_id"], "case_id": str(rec["case"]), "config": _text(rec.get("config")),
        "profile": _text(rec.get("profile")), "device_profile": _text(rec.get("device_profile")),
        "started_utc": utc_text(rec.get("started_utc")), "finished_utc": utc_text(rec.get("finished_utc")),
        "duration_s": _num(rec.get("duration_s")), "commit_sha": _text(rec.get("commit")),
        "paddle_version": _text(rec.get("paddle_version") or env.get("paddle_version")),
        "status": str(rec["status"]), "exit_code": _int(rec.get("exit_code")),
        "message": _text(rec.get("message")), "advice": _text(rec.get("advice")),
        "marker": _text(metrics.get("marker")), "loss": _text(metrics.get("loss")),
        "loss_value": _num(metrics.get("loss")), "ips": _num(metrics.get("ips")),
        "max_mem": _text(metrics.get("max_mem")), "max_mem_value": _num(metrics.get("max_mem")),
        "baseline_loss": _text(bmetrics.get("loss")), "baseline_loss_value": _num(bmetrics.get("loss")),
        "baseline_ips": _num(bmetrics.get("ips")), "baseline_max_mem": _text(bmetrics.get("max_mem")),
        "baseline_max_mem_value": _num(bmetrics.get("max_mem")), "ips_tol_pct": _num(btol.get("ips_pct")),
        "baseline_run_id": _text(bprov.get("run_id") or base.get("run_id")), "baseline_path": _text(base.get("path")),
        "device": _text(env.get("device")), "world_size": _int(env.get("world_size")),
        "nnodes": _int(env.get("nnodes")), "precision_requested": _text(env.get("precision_requested")),
        "precision_effective": _text(env.get("precision_effective")),
        "precision_note": _text(env.get("precision_note")),
        "failure_kind": _text(failure.get("kind")), "failure_rank": _int(failure.get("rank")),
        "failure_message": _text(failure.get("message")), "record_schema_version": _int(rec.get("schema_version")),
        "source": source, "digest": digest, "imported_utc": imported_utc,
        "record_json": json.dumps(light, sort_keys=True, default=str),
        "host": _text(env.get("hostname") or rec.get("host")),
        "paddle_commit": _text(rec.get("paddle_commit") or env.get("paddle_commit")),
        "ips_steady": _num(steady.get("rate", steady.get("median"))),
    }
    # fmt: on


def validate_record(rec: Any, fallback_run_id: Optional[str] = None) -> dict:
    """The record with run_id filled in and texts bounded; RecordError when it cannot be stored."""
    return _validate_record(rec, fallback_run_id)


class History:
    """An open history database; use as a context manager or call close()."""

    def __init__(self, db: Union[str, Path, None] = None) -> None:
        self.path = resolve_db(home().history_db if db is None else db)  # default: <project home>/reports/
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise from_os_error(err, f"history database {self.path}: cannot create its folder") from None
        try:
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as err:
            raise _db_error(err, self.path, "cannot open") from None
        try:
            self.conn.executescript(_SCHEMA)
            self._migrate()
            self.conn.execute("CREATE INDEX IF NOT EXISTS runs_by_host ON runs (case_id, profile, host, started_utc)")
        except sqlite3.Error as err:
            self.conn.close()
            raise _db_error(err, self.path, "cannot set up the tables") from None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def schema_version(self) -> int:
        """The database schema version stored in `meta`."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    def _migrate(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise SwavbenchError(
                f"history database {self.path} has schema {row[0]}, newer than this swavbench "
                f"({SCHEMA_VERSION}); upgrade swavbench"
            )
        elif int(row[0]) == 1:
            self.conn.executescript(
                f"BEGIN IMMEDIATE;{_MIGRATE_1_TO_2}UPDATE meta SET value='2' WHERE key='schema_version';COMMIT;"
            )

    # -- writing ---------------------------------------------------------------------------------
    def add_record(self, record: Any, source: str = "", fallback_run_id: Optional[str] = None) -> str:
        """Store one run record in one transaction; returns 'imported' or 'unchanged'."""
        rec = validate_record(record, fallback_run_id)
        digest = hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()
        try:
            old = self.conn.execute("SELECT digest FROM runs WHERE run_id=?", (rec["run_id"],)).fetchone()
            if old and old[0] == digest:
                return "unchanged"
            self._store(rec, source, digest)
        except sqlite3.Error as err:
            raise _db_error(err, self.path, f"could not store run {rec['run_id']} (earlier runs are kept)") from None
        return "imported"

    def _store(self, rec: dict, source: str, digest: str) -> None:
        """Replace one run's rows in one transaction, or in a savepoint of the import batch's (rolled back on
        any error, alone)."""
        nested = self.conn.in_transaction  # inside an import batch: a savepoint, so one bad record rolls back alone
        self.conn.execute("SAVEPOINT one_record" if nested else "BEGIN IMMEDIATE")
        try:
            for table in ("runs", "checks", "ranks", "steps"):
                self.conn.execute(f"DELETE FROM {table} WHERE run_id=?", (rec["run_id"],))
            row = _run_row(rec, source, digest, utc_text(datetime.now(timezone.utc).isoformat()) or "")
            names = ", ".join(row)
            self.conn.execute(f"INSERT INTO runs ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
            _insert_children(self.conn, rec)
        except BaseException:
            try:
                if nested:
                    self.conn.execute("ROLLBACK TO one_record")
                    self.conn.execute("RELEASE one_record")
                elif self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        self.conn.execute("RELEASE one_record" if nested else "COMMIT")

    def import_file(self, path: Union[str, Path], summary: ImportSummary) -> None:
        """Import one result.json into `summary`; a corrupt file is recorded there, not raised.

        A file imported before with the same size and mtime is counted unchanged without being read. The
        path is stored absolute (`runs.source`), so the report finds the run's logs from any folder.
        """
        path = Path(os.path.abspath(path))
        try:
            stat = path.stat()
            known = self.conn.execute("SELECT size, mtime_ns, run_id FROM files WHERE path=?", (str(path),)).fetchone()
            if known and known[:2] == (stat.st_size, stat.st_mtime_ns):
                summary.unchanged.append(known[2])
                summary.seen_by_stat += 1
                return
            record = read_record(path)
            if isinstance(record, dict) and (_int(record.get("schema_version")) or 1) > RECORD_SCHEMA_VERSION:
                summary.warnings.append(
                    f"{path}: schema_version {record['schema_version']} is newer; "
                    "imported the fields this version knows"
                )
            outcome = self.add_record(record, source=str(path), fallback_run_id=path.parent.name)
        except (OSError, UnicodeDecodeError, ValueError, RecordError) as err:
            summary.failed.append((str(path), str(err).splitlines()[0] if str(err) else type(err).__name__))
            return
        run_id = str(record.get("run_id") or path.parent.name)
        self.conn.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (str(path), stat.st_size, stat.st_mtime_ns, run_id)
        )
        (summary.imported if outcome == "imported" else summary.unchanged).append(run_id)

    def import_runs(self, *roots: Union[str, Path]) -> ImportSummary:
        """Import every result.json under each root, at any depth (sorted per root); see ImportSummary."""
        summary = ImportSummary()
        paths = [Path(r) for r in roots]
        missing = [str(p) for p in paths if not p.is_dir()]
        if not paths or missing:
            raise SwavbenchError(f"runs folder {', '.join(missing) or '(none given)'} does not exist")
        records = find_records(paths)
        for start in range(0, len(records), IMPORT_BATCH):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    for path in records[start : start + IMPORT_BATCH]:
                        self.import_file(path, summary)
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
            except sqlite3.Error as err:  # disk full / read-only under the database: exit 6, earlier batches kept
                raise _db_error(err, self.path, f"could not store runs {start + 1}-{start + IMPORT_BATCH} "
                                                "(earlier batches are kept)") from None
        return summary

    # -- reading ---------------------------------------------------------------------------------
    def _frame(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        try:
            return pd.read_sql_query(sql, self.conn, params=params)
        except (sqlite3.Error, pd.errors.DatabaseError) as err:
            raise _db_error(err, self.path, "cannot read") from None

    def runs(self, since: Optional[str] = None, case_pattern: Optional[str] = None) -> pd.DataFrame:
        """All runs (oldest first), optionally from `since` (date/ISO time, UTC) and matching a case glob."""
        frame = self._frame(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started_utc, run_id")
        if since:
            frame = frame[frame["started_utc"].fillna("") >= parse_since(since)]
        if case_pattern:
            frame = frame[frame["case"].map(lambda case: case_matches(case, case_pattern))]
        return frame.reset_index(drop=True)

    def latest(self, since: Optional[str] = None, case_pattern: Optional[str] = None) -> pd.DataFrame:
        """The newest run per (case, profile), sorted by case and profile."""
        frame = self.runs(since, case_pattern)
        frame = frame.assign(profile=frame["profile"].fillna(""))
        newest = frame.groupby(["case", "profile"], sort=True).tail(1)
        return newest.sort_values(["case", "profile"]).reset_index(drop=True)

    def trend(self, case: str, profile: Optional[str] = None, since: Optional[str] = None) -> pd.DataFrame:
        """One case's runs over time (one profile if given): ips, loss, memory and their baselines."""
        frame = self.runs(since)
        frame = frame[frame["case"] == case]
        if profile is not None:
            frame = frame[frame["profile"].fillna("") == profile]
        return frame.reset_index(drop=True)

    def steps(self, run_id: str, rank: Optional[int] = 0) -> pd.DataFrame:
        """Per-step records of a run (one rank, or all with rank=None), by step."""
        if rank is None:
            return self._frame("SELECT * FROM steps WHERE run_id=? ORDER BY rank, step", (run_id,))
        return self._frame("SELECT * FROM steps WHERE run_id=? AND rank=? ORDER BY step", (run_id, rank))

    def checks(self, run_id: str) -> pd.DataFrame:
        """The verdict's checks of a run, in record order."""
        return self._frame("SELECT * FROM checks WHERE run_id=? ORDER BY idx", (run_id,))

    def ranks(self, run_id: str) -> pd.DataFrame:
        """Per-rank outcome of a run; `log_tail` decoded to a list of lines."""
        frame = self._frame("SELECT * FROM ranks WHERE run_id=? ORDER BY rank", (run_id,))
        frame["log_tail"] = frame["log_tail"].map(lambda text: json.loads(text) if text else [])
        return frame

    def digests(self) -> dict[str, str]:
        """run_id -> digest of its stored record (changes whenever the record does)."""
        return dict(self.conn.execute("SELECT run_id, digest FROM runs").fetchall())

    def record(self, run_id: str) -> Optional[dict]:
        """The stored record of a run (everything but steps/log_lines, unknown fields included)."""
        row = self.conn.execute("SELECT record_json FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None


def _insert_children(conn: sqlite3.Connection, rec: dict) -> None:
    """checks, ranks and steps rows of one record (inside the caller's transaction)."""
    rid = rec["run_id"]
    checks = [c for c in rec.get("checks") or [] if isinstance(c, dict)]
    conn.executemany(
        "INSERT INTO checks VALUES (?,?,?,?,?,?,?,?)",
        [
            (
                rid,
                i,
                *(_text(c.get(k)) for k in ("metric", "baseline", "measured", "diff", "tolerance", "verdict")),
            )
            for i, c in enumerate(checks)
        ],
    )
    ranks = {}
    for r in rec.get("ranks") or []:
        if isinstance(r, dict) and _int(r.get("rank")) is not None:
            tail = r.get("log_tail") if isinstance(r.get("log_tail"), list) else []
            ranks[_int(r["rank"])] = (
                rid,
                _int(r["rank"]),
                _int(r.get("exit_code")),
                _int(r.get("last_step")),
                _int(r.get("reached_marker")),
                _num(r.get("ips")),
                json.dumps([str(line) for line in tail]),
            )
    conn.executemany("INSERT INTO ranks VALUES (?,?,?,?,?,?,?)", list(ranks.values()))
    _insert_steps(conn, rid, rec.get("steps") or [])


def _fnum(value: Any) -> Optional[float]:
    """_num with a fast path for the plain floats and ints step records hold."""
    if type(value) is float or type(value) is int:
        return value if math.isfinite(value) else None
    return _num(value)


def _fint(value: Any) -> Optional[int]:
    """_int with a fast path for plain ints."""
    return value if type(value) is int else _int(value)


def _insert_steps(conn: sqlite3.Connection, run_id: str, steps: list) -> None:
    n, i = _fnum, _fint
    rows = [
        (run_id, i(s.get("rank")) or 0, i(s.get("step")), i(s.get("epoch")), i(s.get("iter")), n(s.get("loss")),
         n(s.get("lr")), n(s.get("batch_cost")), n(s.get("reader_cost")))
        for s in steps
        if isinstance(s, dict)
    ]  # fmt: skip
    conn.executemany("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?)", rows)


def read_record(path: Path) -> Any:
    """The decoded JSON of one result.json (the history-import boundary: one record in, one object out):
    strict JSON, bounded size and depth (swavbench.harness.records.read_record_json)."""
    return read_record_json(path)


def _walk_records(root: Path) -> Iterator[Path]:
    """result.json files under `root`, sorted; a folder holding one is a run and is not searched further."""
    for folder, dirs, files in os.walk(root):
        if "result.json" in files:
            dirs[:] = []  # a run folder's log/ and attempts/ hold no other runs
            yield Path(folder) / "result.json"
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))


def find_records(roots: Iterable[Path]) -> list[Path]:
    """Every run record under the roots (recursive), each root's sorted, a file reached twice listed once."""
    out, seen = [], set()
    for root in roots:
        for path in sorted(_walk_records(Path(root))):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                out.append(path)
    return out


def case_matches(case: str, pattern: str) -> bool:
    """Glob match (`swav_*`); a pattern without wildcards matches as a substring."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(case, pattern)
    return pattern in case


def import_runs(runs_dir: Union[str, Path], db: Union[str, Path, None] = None) -> ImportSummary:
    """Import every result.json under `runs_dir` into the history database `db` (default: the home's)."""
    with History(db) as history:
        return history.import_runs(runs_dir)
