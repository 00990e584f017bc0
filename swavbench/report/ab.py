"""The A/B part of a run's section: a standalone `swavbench ab` record, or the A/B that confirmed an ips failure.

`ab_section(rec)` renders the record's `ab` object (swavbench.harness.abverdict.AbVerdict.as_dict): the two
builds, the verdict with its interval and what to do, the table, and every pair's figures. '' when the
record has no A/B. Kept apart from the rest of the report (issue 12) so the report's layout can change
around it.
"""

from __future__ import annotations

from typing import Any

from swavbench.report.tables import badge, esc

MAX_PAIRS_SHOWN = 200  # a session has at most a few dozen; bound the table anyway


def _pct(x: Any) -> str:
    return f"{(x - 1) * 100:+.2f}%" if isinstance(x, (int, float)) else ""


def _interval(d: dict) -> str:
    if not isinstance(d, dict) or d.get("ratio") is None:
        return "no pairs"
    if d.get("low") is None:
        return f"{_pct(d['ratio'])} (no interval yet: {d.get('pairs')} pair(s))"
    conf = d.get("confidence") or 0
    return f"{_pct(d['ratio'])} [{_pct(d['low'])}, {_pct(d['high'])}] ({conf * 100:.1f}%, {d.get('pairs')} pairs)"


def ab_section(rec: dict) -> str:
    """HTML for the record's A/B, or ''."""
    ab = rec.get("ab") if isinstance(rec.get("ab"), dict) else None
    if ab is None:
        return ""
    ref, cand = ab.get("ref") or {}, ab.get("cand") or {}
    settings, decision = ab.get("settings") or {}, ab.get("decision") or {}
    head = "A/B confirmation" if rec.get("kind") != "ab" else "Paired A/B"
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(r.get(k))}</td>" for k in ("metric", "ref", "cand", "diff", "tolerance"))
        + f"<td>{esc(r.get('verdict'))}</td></tr>"
        for r in ab.get("table") or [] if isinstance(r, dict)
    )  # fmt: skip
    pairs = "".join(
        f"<tr><td>{esc(p.get('pair'))}</td><td>{esc(p.get('first'))}</td><td>{esc(p.get('ref_rate'))}</td>"
        f"<td>{esc(p.get('cand_rate'))}</td><td>{esc(p.get('diff_pct'))}</td></tr>"
        for p in (ab.get("pairs") or [])[:MAX_PAIRS_SHOWN] if isinstance(p, dict)
    )  # fmt: skip
    return (
        f'<h3>{head} {badge(str(ab.get("status")))}</h3>'
        f"<p>ref <code>{esc(ref.get('description'))}</code> vs cand <code>{esc(cand.get('description'))}</code>; "
        f"band ±{esc(settings.get('band_pct'))}%, blocks of {esc(settings.get('block_steps'))} steps, "
        f"at most {esc(settings.get('max_pairs'))} pairs; start-up {esc(ab.get('startup_s'))} s, "
        f"wall {esc(ab.get('wall_s'))} s</p>"
        f'<p class="msg">{esc(ab.get("message"))}</p><p class="msg advice">what to do: {esc(ab.get("advice"))}</p>'
        f"<p>interval (cand / ref steady ips): {esc(_interval(decision))}</p>"
        '<table class="ab"><thead><tr><th>metric</th><th>ref</th><th>cand</th><th>diff</th><th>tolerance</th>'
        f"<th>verdict</th></tr></thead><tbody>{rows}</tbody></table>"
        '<table class="ab-pairs"><thead><tr><th>pair</th><th>first</th><th>ref img/s</th><th>cand img/s</th>'
        f"<th>diff %</th></tr></thead><tbody>{pairs}</tbody></table>"
    )
