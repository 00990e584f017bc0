"""A/B session -> verdict: the table, each pair's figures, the interval, what to do; the JSON for result.json.

Outcomes and exit codes (docs/verdicts.md "Paired A/B"):
- no_change    (0): the paired interval of cand / ref steady ips lies inside +-band;
- regression   (1): the candidate is slower beyond the band (interval below 1, estimate beyond the band);
- improvement  (1): the same on the faster side: like check_result's speed-up, the figure left its band
                    (the baseline is out of date); the text says "faster";
- changed      (1): a loss (any rank, any step) or the logged max mem differs between the sides: a metric
                    outside its exact tolerance; the first differing step is named, the timing is moot;
- failed       (2): a side crashed, hung or diverged;
- inconclusive (7): no decision within the session's maximum pairs (a machine too noisy for the band).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Optional

from swavbench.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, EXIT_RUN_FAILED
from swavbench.harness import paired
from swavbench.harness.absession import SIDES, Session, Settings
from swavbench.harness.builds import Build

EXIT_CODES = {"no_change": EXIT_OK, "regression": EXIT_REGRESSION, "improvement": EXIT_REGRESSION,
              "changed": EXIT_REGRESSION, "failed": EXIT_RUN_FAILED, "inconclusive": EXIT_INCONCLUSIVE}  # fmt: skip


@dataclass
class AbVerdict:
    case: str
    status: str  # a key of EXIT_CODES
    message: str
    advice: str
    ref: Build
    cand: Build
    settings: Settings
    decision: Optional[paired.Decision]
    rows: list[tuple[str, str, str, str, str, str]]  # metric, ref, cand, diff, tolerance, verdict
    pairs: list[dict] = field(default_factory=list)
    blocks: list[dict] = field(default_factory=list)
    loss: str = ""
    memory: str = ""
    startup_s: float = 0.0
    wall_s: float = 0.0
    log_dirs: dict = field(default_factory=dict)
    failed_side: Optional[str] = None  # "ref" | "cand" when a side failed

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def text(self) -> str:
        """The verdict block: what ran, the table, each pair, the interval, the outcome, what to do."""
        lines = [f"A/B {self.case}: ref {self.ref.describe()} vs cand {self.cand.describe()}",
                 _table(self.rows)]  # fmt: skip
        for p in self.pairs:
            lines.append(f"  pair {p['pair']:>2} ({p['first']} first): ref {p['ref_rate']:.1f} img/s (steps "
                         f"{p['ref_steps'][0]}-{p['ref_steps'][1]}), cand {p['cand_rate']:.1f} (steps "
                         f"{p['cand_steps'][0]}-{p['cand_steps'][1]}): {p['diff_pct']:+.2f}%")  # fmt: skip
        if self.decision is not None:
            lines.append(f"interval: cand vs ref {self.decision.interval_text()}, band ±{self.settings.band_pct:g}%")
        lines.append(f"session: {len(self.blocks)} blocks of {self.settings.block_steps} steps, start-up "
                     f"{self.startup_s:.0f} s, wall {self.wall_s:.0f} s")  # fmt: skip
        lines.append(f"{self.status.upper().replace('_', ' ')}: {self.message}")
        lines.append(f"what to do: {self.advice}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """The `ab` object of result.json."""
        return {
            "status": self.status, "exit_code": self.exit_code, "message": self.message, "advice": self.advice,
            "ref": self.ref.as_dict(), "cand": self.cand.as_dict(),
            "settings": {k: getattr(self.settings, k) for k in ("band_pct", "block_steps", "warmup_steps",
                                                                 "min_pairs", "max_pairs", "confidence")},
            "decision": self.decision.as_dict() if self.decision else None,
            "table": [dict(zip(("metric", "ref", "cand", "diff", "tolerance", "verdict"), r)) for r in self.rows],
            "pairs": self.pairs, "blocks": self.blocks, "loss": self.loss, "memory": self.memory,
            "startup_s": round(self.startup_s, 2), "wall_s": round(self.wall_s, 2), "log_dirs": self.log_dirs,
            "failed_side": self.failed_side,
        }  # fmt: skip


def _table(rows: list[tuple[str, ...]]) -> str:
    head = ("metric", "ref", "cand", "diff", "tolerance", "verdict")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])


def pair_rows(session: Session) -> list[dict]:
    """Each complete pair's figures, in session order."""
    blocks, out = session.blocks, []
    for i in range(0, len(blocks) - 1, 2):
        a, b = blocks[i], blocks[i + 1]
        ref, cand = (a, b) if a.side == 0 else (b, a)
        out.append({"pair": i // 2 + 1, "first": SIDES[a.side], "ref_rate": round(ref.rate, 4),
                    "cand_rate": round(cand.rate, 4), "ref_steps": list(ref.steps), "cand_steps": list(cand.steps),
                    "diff_pct": round((cand.rate / ref.rate - 1) * 100, 3)})  # fmt: skip
    return out


def _side_median(session: Session, side: int) -> str:
    rates = [b.rate for b in session.blocks if b.side == side]
    return f"{statistics.median(rates):.2f}" if rates else "-"


def judge(case: str, session: Session, ref: Build, cand: Build, settings: Settings) -> AbVerdict:
    """The verdict on a finished session (module docstring)."""
    d = session.decision
    loss = session.loss.text() if session.loss else "not compared (the session stopped before its first round)"
    memory = session.memory or ""
    v = AbVerdict(case, "inconclusive", "", "", ref, cand, settings, d, [], pair_rows(session),
                  [b.as_dict() for b in session.blocks], loss, memory or "identical where both logged it",
                  session.startup_s, session.wall_s)  # fmt: skip
    diff = "-" if not d or d.estimate is None else f"{(d.estimate - 1) * 100:+.2f}%"
    if d and d.low is not None and d.high is not None:
        diff += f" [{(d.low - 1) * 100:+.2f}, {(d.high - 1) * 100:+.2f}]"
    lc = session.loss
    loss_diff = "-" if lc is None else (f"identical, {lc.steps} steps" if lc.difference is None else
                                        f"step {lc.difference.step} rank {lc.difference.rank}")  # fmt: skip
    v.rows = [
        ("ips_steady (paired)", _side_median(session, 0), _side_median(session, 1), diff,
         f"±{settings.band_pct:g}%", d.status if d else "-"),
        ("loss (every rank)", "", "", loss_diff, "exact", "-" if lc is None else "fail" if lc.difference else "pass"),
        ("max_mem", "", "", memory.split(":")[0].replace("max mem differs first at ", "") if memory else
         "identical", "exact", "fail" if memory else "pass"),
    ]  # fmt: skip
    v.status, v.message, v.advice = _outcome(case, session, d, memory, settings, ref)
    v.failed_side = session.failure.side if session.failure is not None else None
    return v


def _outcome(case: str, s: Session, d: Optional[paired.Decision], memory: str, settings: Settings,
             ref: Build) -> tuple[str, str, str]:  # fmt: skip
    band = f"±{settings.band_pct:g}%"
    if s.failure is not None:
        return ("failed", s.failure.args[0],
                f"read the {s.failure.side} side's logs (kept with this record) and fix the failure first")  # fmt: skip
    if s.loss is not None and s.loss.difference is not None:
        text = s.loss.text().replace("(run 1)", "(ref)").replace("(run 2)", "(cand)")
        return ("changed", f"the candidate changes the loss: {text}",
                "the two sides compute different things (code, config or data differ between them), so their speed "
                "is not comparable; if the change is intended, re-record the baseline "
                f"(swavbench update-baseline {case})")  # fmt: skip
    if memory:
        return ("changed", f"the candidate changes the memory use: {memory}",
                f"check model, batch size or precision changes; if intended, run swavbench update-baseline {case}")
    if d is None or d.estimate is None:
        return ("inconclusive", "no complete pair was measured", "rerun; raise --max-pairs")
    pct = abs(d.estimate - 1) * 100
    if d.status == "regression":
        return ("regression", f"the candidate is {pct:.1f}% slower than the reference ({d.interval_text()}, "
                f"band {band})", f"find the change that costs it: bisect with swavbench ab {case} --ref <good> "
                "--cand <bad>; the pair figures above show it is not one odd block")  # fmt: skip
    if d.status == "improvement":
        return ("improvement", f"the candidate is {pct:.1f}% faster than the reference ({d.interval_text()}, "
                f"band {band})", f"if intended, re-record the baseline: swavbench update-baseline {case}")  # fmt: skip
    if d.status == "no_change":
        return ("no_change", f"steady ips within {band} of the reference ({d.interval_text()}); loss and memory "
                "identical", "nothing: the candidate runs as fast as the reference on this machine")  # fmt: skip
    return ("inconclusive", f"no decision within {settings.max_pairs} pairs: {d.interval_text()} neither lies "
            f"inside {band} nor shows a change beyond it",
            "the machine was too noisy for this band: rerun when it is quieter, raise --max-pairs, or widen --band "
            f"(pair spread above; reference: {ref.describe()})")  # fmt: skip
