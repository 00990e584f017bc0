"""HTML report built only from the history database: `build_report(history, out_path)` writes index.html and
the per-run pages beside it (run/<run>.html)."""

from swavbench.report.html import DEFAULT_RUN_PAGES, build_report, render_index

__all__ = ["DEFAULT_RUN_PAGES", "build_report", "render_index"]
