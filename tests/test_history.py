"""History: import of run records into SQLite, idempotence, transactions, corrupt records, queries, CLI."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from swavbench.commands import history as history_cmd
from swavbench.errors import SwavbenchError
from swavbench.store import history as hist
from swavbench.store.history import History, import_runs, resolve_db

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
A, B, C = "swav_pt_1n8c_fp16o1", "swav_pt_1n1c_fp32", "swav_pt_1n2c_fp32"
CRASH = f"20261123T200102Z-{A}-d41f"
ROOT = Path(__file__).resolve().parents[1]


def counts(h: History) -> dict[str, int]:
    return {t: h.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "checks", "ranks", "steps")}


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A writable copy of the fixture run folders."""
    return Path(shutil.copytree(FIXTURES, tmp_path / "runs"))


@pytest.fixture
def h(tmp_path: Path) -> History:
    with History(tmp_path / "history.sqlite") as history:
        history.import_runs(FIXTURES)
        yield history


def test_import_fixture_runs_then_reimport_is_a_no_op(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    first = import_runs(FIXTURES, db)
    assert (len(first.imported), len(first.unchanged), first.failed) == (9, 0, [])
    with History(db) as h:
        before = counts(h)
    again = import_runs(FIXTURES, db)
    assert (len(again.imported), len(again.unchanged), again.failed) == (0, 9, [])
    with History(db) as h:
        assert counts(h) == before
        assert before["runs"] == 9 and before["steps"] == 4 * 25 + 3 * 40 + 12 + 25
        assert h.schema_version() == hist.SCHEMA_VERSION


def test_changed_record_replaces_the_old_rows(runs_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    import_runs(runs_dir, db)
    path = runs_dir / f"20261121T203000Z-{B}-b002" / "result.json"
    rec = json.loads(path.read_text())
    rec["metrics"]["ips"] = 50.0
    rec["steps"] = rec["steps"][:5]
    path.write_text(json.dumps(rec))
    summary = import_runs(runs_dir, db)
    assert summary.imported == [rec["run_id"]] and len(summary.unchanged) == 8
    with History(db) as h:
        assert h.runs().set_index("run_id").loc[rec["run_id"], "ips"] == 50.0
        assert len(h.steps(rec["run_id"])) == 5


def test_corrupt_records_are_named_and_skipped(runs_dir: Path, tmp_path: Path) -> None:
    for name, text in [("bad-json", '{"run_id": "x", '), ("a-list", "[1, 2]"), ("no-case", '{"status": "pass"}')]:
        (runs_dir / name).mkdir()
        (runs_dir / name / "result.json").write_text(text)
    (runs_dir / "not-utf8").mkdir()
    (runs_dir / "not-utf8" / "result.json").write_bytes(b"\xff\xfe\x00garbage")
    summary = import_runs(runs_dir, tmp_path / "h.sqlite")
    assert len(summary.imported) == 9
    failed = {Path(p).parent.name: reason for p, reason in summary.failed}
    assert set(failed) == {"bad-json", "a-list", "no-case", "not-utf8"}
    assert "case" in failed["no-case"] and "JSON object" in failed["a-list"]
    assert "4 skipped" in summary.line()


def test_failed_write_rolls_back_and_keeps_earlier_history(h: History, monkeypatch: pytest.MonkeyPatch) -> None:
    before = counts(h)
    rec = json.loads((FIXTURES / CRASH / "result.json").read_text())
    rec["run_id"] = "new-run"

    def explode(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(hist, "_insert_steps", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        h.add_record(rec)
    assert counts(h) == before
    assert "new-run" not in set(h.runs()["run_id"])
    # a changed record that fails mid-write leaves the old version in place
    rec["run_id"] = CRASH
    with pytest.raises(RuntimeError):
        h.add_record(rec | {"message": "changed"})
    assert counts(h) == before and h.record(CRASH)["message"].startswith("rank 3 died")
    monkeypatch.undo()
    assert h.add_record(rec | {"run_id": "new-run"}) == "imported"


def test_process_killed_mid_transaction_leaves_history_intact(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    import_runs(FIXTURES, db)
    script = textwrap.dedent(f"""
        import json, os
        from swavbench.store import history as hist
        rec = json.loads(open({str(FIXTURES / CRASH / "result.json")!r}).read())
        rec["run_id"] = "killed-run"
        def die(conn, run_id, steps):
            conn.execute("INSERT INTO steps (run_id, rank) VALUES ('killed-run', 0)")
            os._exit(9)
        hist._insert_steps = die
        hist.History({str(db)!r}).add_record(rec)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    with History(db) as h:
        assert h.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert len(h.runs()) == 9 and "killed-run" not in set(h.runs()["run_id"])
        assert h.conn.execute("SELECT COUNT(*) FROM steps WHERE run_id='killed-run'").fetchone()[0] == 0


@pytest.mark.parametrize(
    "db, expected",
    [("reports/history.sqlite", "reports/history.sqlite"), ("sqlite:///rel/h.sqlite", "rel/h.sqlite"),
     ("sqlite:////abs/h.sqlite", "/abs/h.sqlite"), ("sqlite://", ":memory:"), ("sqlite+pysqlite:///x.db", "x.db")],
)  # fmt: skip
def test_resolve_db_paths_and_urls(db: str, expected: str) -> None:
    assert resolve_db(db) == expected


def test_other_database_schemes_are_refused() -> None:
    with pytest.raises(SwavbenchError, match="only sqlite is supported"):
        resolve_db("postgresql://ci@db/swavbench")


def test_database_from_a_newer_swavbench_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    History(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(SwavbenchError, match="schema 99"):
        History(db)


def test_unknown_fields_are_kept_and_newer_schema_warns(h: History, tmp_path: Path) -> None:
    c9d0 = f"20261122T200102Z-{A}-c9d0"
    assert h.record(c9d0)["harness_version"] == "0.1.0"
    assert "steps" not in h.record(c9d0)
    rec = json.loads((FIXTURES / c9d0 / "result.json").read_text())
    rec |= {"schema_version": 2, "run_id": "future", "metrics": {"ips": "fast"}, "ranks": [{"rank": "x"}, 3]}
    (tmp_path / "runs" / "future").mkdir(parents=True)
    (tmp_path / "runs" / "future" / "result.json").write_text(json.dumps(rec))
    summary = h.import_runs(tmp_path / "runs")
    assert summary.imported == ["future"] and "schema_version 2" in summary.warnings[0]
    row = h.runs().set_index("run_id").loc["future"]
    assert row["record_schema_version"] == 2 and row["ips"] != row["ips"]  # NaN: unreadable ips is not stored
    assert h.ranks("future").empty


def test_queries_latest_trend_steps_and_filters(h: History) -> None:
    latest = h.latest()
    assert list(zip(latest["case"], latest["profile"], latest["status"])) == [
        (B, "cpu-amd-epyc-4t", "pass"),
        (B, "cpu-intel-xeon-2t", "regression"),
        (C, "cpu-intel-xeon-2t", "no_baseline"),
        (A, "cpu-intel-xeon-2t", "failed"),
    ]
    trend = h.trend(A)
    assert list(trend["status"]) == ["no_baseline", "pass", "pass", "failed"]
    assert trend["started_utc"].is_monotonic_increasing
    assert trend["ips"].isna().tolist() == [False, False, False, True]
    steps = h.steps(CRASH)
    assert list(steps["step"]) == list(range(1, 13))
    ranks = h.ranks(CRASH)
    assert ranks.set_index("rank").loc[3, "exit_code"] == -9
    assert any("<script>" in line for line in ranks.set_index("rank").loc[3, "log_tail"])
    assert set(h.runs(since="2026-11-23")["started_utc"].str[:10]) == {"2026-11-23"}
    assert set(h.runs(since="2026-11-23T20:00:00Z")["case"]) == {A, C}
    assert set(h.runs(case_pattern="*1n1c*")["case"]) == {B}
    assert set(h.runs(case_pattern="fp32")["case"]) == {B, C}
    with pytest.raises(SwavbenchError, match="--since"):
        h.runs(since="last week")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    history_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_import_and_list(runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"  # sqlite:////abs/path
    assert _cli(["history", "import", str(runs_dir), "--db", url]) == 0
    assert "imported 9 run(s)" in capsys.readouterr().out
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "result.json").write_text("{")
    assert _cli(["history", "import", str(runs_dir), "--db", url]) == 3
    out, err = capsys.readouterr()
    assert "9 unchanged, 1 skipped" in out and "broken/result.json" in err
    assert _cli(["history", "list", "--db", url, "--case", "1n2c"]) == 0
    out = capsys.readouterr().out
    assert f"20261123T210000Z-{C}-c001" in out and A not in out


def _nest(runs_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The fixture runs split over two machines' artefact trees, at different depths."""
    one, two = tmp_path / "ci" / "host-1", tmp_path / "ci" / "host-2"
    for i, run in enumerate(sorted(runs_dir.iterdir())):
        dest = (one / "nightly" / "reports" / "runs") if i % 2 else (two / "artifacts")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run), dest / run.name)
    crash = next((tmp_path / "ci").rglob(CRASH))
    (crash / "log").mkdir()
    (crash / "log" / "result.json").write_text("{not a run: inside a run folder, never read")
    return one, two


def test_import_is_recursive_over_several_roots(runs_dir: Path, tmp_path: Path, capsys) -> None:
    one, two = _nest(runs_dir, tmp_path)
    summary = import_runs(tmp_path / "ci", tmp_path / "all.sqlite")
    assert (len(summary.imported), summary.failed) == (9, [])
    url = f"sqlite:///{tmp_path / 'two.sqlite'}"
    assert _cli(["history", "import", str(one), str(two), str(two / "artifacts"), "--db", url]) == 0
    assert "imported 9 run(s), 0 unchanged, 0 skipped" in capsys.readouterr().out  # a run reached twice: once
    with History(tmp_path / "two.sqlite") as h:
        runs = h.runs()
        assert len(runs) == 9 and set(runs["host"]) == {"ci-runner-3"}
        assert all(Path(s).is_absolute() and Path(s).is_file() for s in runs["source"])
    with pytest.raises(SwavbenchError, match="nowhere does not exist"):
        _cli(["history", "import", str(one), str(tmp_path / "nowhere"), "--db", url])


def test_reimport_skips_known_files_on_a_stat_and_reads_new_or_changed_ones(runs_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    import_runs(runs_dir, db)
    reads: list[Path] = []
    real = hist.read_record

    def counting(path: Path):
        reads.append(Path(path))
        return real(path)

    new = runs_dir / "20261124T200102Z-new"
    shutil.copytree(runs_dir / CRASH, new)
    rec = json.loads((new / "result.json").read_text()) | {"run_id": new.name}
    (new / "result.json").write_text(json.dumps(rec))
    changed = runs_dir / f"20261121T203000Z-{B}-b002" / "result.json"
    changed.write_text(changed.read_text().replace('"status": "pass"', '"status": "regression"'))
    with History(db) as h, pytest.MonkeyPatch.context() as mp:
        mp.setattr(hist, "read_record", counting)
        summary = h.import_runs(runs_dir)
        assert sorted(p.parent.name for p in reads) == sorted([new.name, changed.parent.name])
        assert summary.imported == [f"20261121T203000Z-{B}-b002", new.name] and summary.seen_by_stat == 8
        assert h.runs().set_index("run_id").loc[f"20261121T203000Z-{B}-b002", "status"] == "regression"
        reads.clear()
        again = h.import_runs(runs_dir)
        assert reads == [] and again.seen_by_stat == 10 and again.imported == []


def test_schema_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    import_runs(FIXTURES, db)
    with sqlite3.connect(db) as conn:  # what swavbench 0.1 wrote: no files table, no host/paddle columns
        conn.executescript(
            "DROP TABLE files; DROP INDEX runs_by_host; ALTER TABLE runs DROP COLUMN host;"
            "ALTER TABLE runs DROP COLUMN paddle_commit; ALTER TABLE runs DROP COLUMN ips_steady;"
            "UPDATE meta SET value='1' WHERE key='schema_version';"
        )
    with History(db) as h:
        assert h.schema_version() == 2
        runs = h.runs().set_index("run_id")
        assert set(runs["host"]) == {"ci-runner-3"} and runs["paddle_commit"].isna().all()
        assert "ips_steady" in runs.columns
        summary = h.import_runs(FIXTURES)
        assert len(summary.unchanged) == 9 and summary.seen_by_stat == 0  # files table filled from now on
        assert h.import_runs(FIXTURES).seen_by_stat == 9


def test_paddle_commit_is_read_from_the_record_when_present(h: History) -> None:
    rec = json.loads((FIXTURES / CRASH / "result.json").read_text())
    h.add_record(rec | {"run_id": "with-paddle", "paddle_commit": "3f2a9c1b"})
    runs = h.runs().set_index("run_id")
    assert runs.loc["with-paddle", "paddle_commit"] == "3f2a9c1b" and pd.isna(runs.loc[CRASH, "paddle_commit"])


def test_import_batch_that_fails_is_rolled_back_and_read_again(runs_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(hist, "IMPORT_BATCH", 4)
    real, calls = hist._insert_steps, []

    def explode_on_sixth(conn, run_id, steps):
        calls.append(run_id)
        if len(calls) == 6:
            raise RuntimeError("disk on fire")
        real(conn, run_id, steps)

    monkeypatch.setattr(hist, "_insert_steps", explode_on_sixth)
    with History(tmp_path / "h.sqlite") as h:
        with pytest.raises(RuntimeError, match="disk on fire"):
            h.import_runs(runs_dir)
        assert counts(h)["runs"] == 4 and h.conn.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 4
        monkeypatch.setattr(hist, "_insert_steps", real)
        summary = h.import_runs(runs_dir)
        assert (len(summary.imported), summary.seen_by_stat, counts(h)["runs"]) == (5, 4, 9)
