"""Per-run pages `run/<run>.html` next to the index: verdict, failure and log tail, checks, ranks, environment,
step charts against the baseline run, and links to every worker log.

Logs are linked relative to the page when the run folder lies inside the report folder (the default
reports/index.html over reports/runs/), else copied into `run/<run>/` beside the page, so the folder can be
published as it is. Pages are rewritten only when their run record, its baseline run or the run's folder
changed (the key of each page is kept in `run/.pages.json`); pages of runs no longer selected are removed
with their copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import pandas as pd

from swavbench.report.ab import ab_section  # issue 12: the A/B part of a run
from swavbench.report.assets import CSS
from swavbench.report.charts import _slug, group_anchor, run_charts, short_time
from swavbench.report.tables import (
    attempts_table,
    checks_table,
    env_table,
    esc,
    failure_box,
    ranks_table,
    run_summary_line,
)
from swavbench.report.triage import records
from swavbench.store.history import History

PAGE_DIR = "run"
PAGE_VERSION = "2"  # bump when the page layout changes: every page is rewritten once
MANIFEST = ".pages.json"
LOG_FOLDERS = ("log", "attempts")


def run_slug(run_id: str) -> str:
    """A run id as a file name: safe characters, unique per run id, never '.', '..' or hidden."""
    slug = _slug(str(run_id))
    return "_" + slug if slug.startswith(".") else slug


def page_name(run_id: str) -> str:
    """The file name of a run's page inside PAGE_DIR."""
    return run_slug(run_id) + ".html"


def page_href(run_id: str) -> str:
    """The link from the index to a run's page."""
    return f"{PAGE_DIR}/{page_name(run_id)}"


def log_files(run_dir: Path) -> list[Path]:
    """The run's log files (log/* and attempts/<n>/log/*), workerlogs in rank order."""
    found = []
    for top in LOG_FOLDERS:
        base = run_dir / top
        if base.is_dir():
            found += [p for p in base.rglob("*") if p.is_file()]

    def order(p: Path) -> tuple:
        tail = p.name.rsplit(".", 1)[-1]
        return (str(p.parent), not p.name.startswith("workerlog."), int(tail) if tail.isdigit() else 0, p.name)

    return sorted(found, key=order)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _stale(copy: Path, src: Path) -> bool:
    """True when the copy is missing or differs from its source in size or mtime (copy2 keeps the mtime)."""
    if not copy.is_file():
        return True
    a, b = copy.stat(), src.stat()
    return a.st_size != b.st_size or a.st_mtime_ns != b.st_mtime_ns


def place_logs(run_id: str, source: Optional[str], site: Path) -> tuple[list[tuple[str, str]], str]:
    """([(label, href from the page)], note) for a run's logs: linked in place inside `site`, else copied."""
    if not source:
        return [], "no run folder recorded for this run"
    run_dir = Path(source).parent
    files = log_files(run_dir) if run_dir.is_dir() else []
    if not files:
        where = "has no log files" if run_dir.is_dir() else "is gone (moved or deleted since the import)"
        return [], f"run folder {run_dir} {where}"
    pages = site / PAGE_DIR
    links = []
    for src in files:
        rel = src.relative_to(run_dir)
        if _inside(src, site):
            href = os.path.relpath(src.resolve(), pages.resolve())
        else:
            dest = pages / run_slug(run_id) / rel
            if _stale(dest, src):
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
            href = f"{run_slug(run_id)}/{rel.as_posix()}"
        links.append((rel.as_posix(), Path(href).as_posix()))
    how = "linked in place" if _inside(run_dir, site) else f"copied from {run_dir}"
    return links, how


def _logs_section(links: list[tuple[str, str]], note: str) -> str:
    items = "".join(f'<li><a href="{esc(href)}">{esc(label)}</a></li>' for label, href in links)
    body = f'<ul class="logs">{items}</ul>' if items else ""
    return f'<section class="card" id="logs"><h2>Logs</h2><p class="muted">{esc(note)}</p>{body}</section>'


def _figures(charts: list[tuple[str, str]]) -> str:
    figs = "".join(f"<figure><figcaption>{esc(c)}</figcaption>{svg}</figure>" for c, svg in charts)
    return f'<div class="charts steps">{figs}</div>'


class RunPages:
    """Writes the pages of the selected runs of one History into `<site>/run/`."""

    def __init__(self, history: History, runs: pd.DataFrame, selected: set[str], site: Path) -> None:
        self.h, self.site, self.selected = history, Path(site), selected
        self.rows = {r["run_id"]: r for r in records(runs[runs["run_id"].isin(selected)])}
        self.started = dict(zip(runs["run_id"], runs["started_utc"]))
        self.digests = history.digests()
        self._steps: dict[str, pd.DataFrame] = {}

    def steps(self, run_id: str) -> pd.DataFrame:
        """Steps of a run (cached: a baseline run's curve is drawn on every run judged against it)."""
        if run_id not in self._steps:
            self._steps[run_id] = self.h.steps(run_id)
        return self._steps[run_id]

    def _key(self, r: dict) -> str:
        """What the page shows, in a hash: its record, its baseline run's, where the run folder is. A run's
        logs are final once its result.json is written, so they are not re-read to decide."""
        base = r.get("baseline_run_id") or ""
        parts = [PAGE_VERSION, self.digests.get(r["run_id"], ""), base, self.digests.get(base, ""),
                 str(base in self.selected), str(self.started.get(base)), str(r.get("source"))]  # fmt: skip
        return hashlib.sha1("\0".join(parts).encode()).hexdigest()

    def _baseline(self, r: dict) -> tuple[Optional[pd.DataFrame], str, str]:
        """(baseline run's steps or None, legend label, note under 'Steps')."""
        base = r.get("baseline_run_id") or ""
        if not base:
            return None, "", '<span class="muted">(no baseline)</span>'
        steps = self.steps(base) if base != r["run_id"] else pd.DataFrame()
        when = self.started.get(base)
        label = f"baseline run {short_time(when)}" if when else "baseline run"
        if base in self.selected:
            note = f'<span class="muted">(dashed: <a href="{esc(page_name(base))}">baseline run</a>)</span>'
        else:
            where = "in history, no page" if not steps.empty else "not in history"
            note = f'<span class="muted">(baseline run {esc(base)} {where})</span>'
        return (steps if not steps.empty else None), label, note

    def render(self, r: dict) -> str:
        """One run's whole page."""
        rid = r["run_id"]
        rec, ranks, checks = self.h.record(rid) or {}, self.h.ranks(rid), self.h.checks(rid)
        base_steps, label, note = self._baseline(r)
        row = pd.Series(r)
        links, how = place_logs(rid, r.get("source"), self.site)
        advice = f'<p class="msg advice">{esc(r["advice"])}</p>' if r.get("advice") else ""
        command = esc(" ".join(map(str, rec.get("command") or []))) or "—"
        back = f"../index.html#{group_anchor(r['case'], r['profile'] or '')}"
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{esc(r['case'])} · {esc(rid)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(r['case'])} <span class=\"muted\">· {esc(r['profile'])} · "
            f"{esc(r['host'])}</span></h1><p>{run_summary_line(row)}</p>"
            f'<nav><a href="{esc(back)}">← report</a><a href="#logs">logs</a></nav></header><main>'
            f'<section class="card" id="verdict"><p class="msg">{esc(r["message"])}</p>{advice}'
            f"{failure_box(row, rec, ranks)}{attempts_table(rec)}{ab_section(rec)}"
            f'<div class="row"><div>{checks_table(checks)}{ranks_table(ranks, row)}</div>{env_table(row, rec)}</div>'
            f"<h3>Steps {note}</h3>{_figures(run_charts(self.steps(rid), base_steps, label))}"
            f'<p class="muted">command: <code>{command}</code></p></section>'
            f"{_logs_section(links, how)}</main></body></html>"
        )

    def write(self) -> dict[str, str]:
        """Write the changed pages, remove those no longer selected; returns run_id -> href from the index."""
        pages = self.site / PAGE_DIR
        pages.mkdir(parents=True, exist_ok=True)
        manifest_path = pages / MANIFEST
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        new: dict[str, str] = {}
        for rid, r in self.rows.items():
            key = self._key(r)
            target = pages / page_name(rid)
            if old.get(rid) != key or not target.is_file():
                _write_text(target, self.render(r))
            new[rid] = key
        for rid in set(old) - set(new):
            (pages / page_name(rid)).unlink(missing_ok=True)
            shutil.rmtree(pages / run_slug(rid), ignore_errors=True)
        _write_text(manifest_path, json.dumps(new, sort_keys=True))
        return {rid: page_href(rid) for rid in new}


def _write_text(path: Path, text: str) -> None:
    """Write via a temp file and rename (a reader never sees half a page)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:  # a full disk or a failed rename leaves no half page and no temp file behind
        tmp.unlink(missing_ok=True)
        raise
