"""The report shows an A/B (issue 12): a standalone `swavbench ab` record, and an A/B confirmation's."""

from __future__ import annotations

import sys

from swavbench.harness import cases, paired
from swavbench.harness.ab import ab_record
from swavbench.harness.absession import Block, Session, Settings
from swavbench.harness.abverdict import judge
from swavbench.harness.builds import REPO_ROOT, Build
from swavbench.harness.determinism import Comparison
from swavbench.report.ab import ab_section
from swavbench.report.html import build_report
from swavbench.report.runpage import page_name
from swavbench.store.history import History

CASE = "swav_pt_1n8c_fp16o1"


def verdict(ratio: float):
    blocks = [Block(side, (i * 3 + 1, i * 3 + 3), [100.0 * (ratio if side else 1.0)] * 3)
              for i, side in enumerate(paired.block_order(12))]  # fmt: skip
    s = Session(blocks=blocks, loss=Comparison(36, 8, None))
    s.decision = paired.decide(s.ratios, 5)
    ref = Build("revision", "HEAD~1", REPO_ROOT, sys.executable, "a" * 40)
    cand = Build("tree", "", REPO_ROOT, sys.executable, None)
    return judge(CASE, s, ref, cand, Settings())


def test_a_standalone_ab_record_is_shown_with_its_pairs_and_interval(tmp_path):
    plan = cases.plan(cases.resolve_case(CASE), "cpu")
    rec = ab_record(plan, f"20261201T000000Z-{CASE}-ab01", verdict(0.9), 0.0, ["swavbench", "ab", CASE])
    assert rec["kind"] == "ab" and rec["status"] == "regression" and rec["exit_code"] == 1
    with History(tmp_path / "h.sqlite") as h:
        h.add_record(rec)
        index = build_report(h, tmp_path / "site" / "index.html")
    assert rec["run_id"] in index.read_text()  # the index lists it and links its page
    page = (tmp_path / "site" / "run" / page_name(rec["run_id"])).read_text()
    assert "Paired A/B" in page and "revision aaaaaaaaaa (HEAD~1)" in page
    assert "-10.00% [-10.00%, -10.00%]" in page and page.count("<td>-10.0</td>") == 6  # six pairs
    assert "what to do: find the change that costs it" in page


def test_the_ab_section_escapes_and_is_empty_without_an_ab():
    assert ab_section({"status": "pass"}) == ""
    rec = {"kind": "run", "ab": {**verdict(1.0).as_dict(), "message": "<script>x</script>"}}
    html = ab_section(rec)
    assert "A/B confirmation" in html and "<script>x" not in html and "&lt;script&gt;" in html
