"""HTML report built only from the history database: `build_report(history, out_path)`."""

from swavbench.report.html import build_report, render_report

__all__ = ["build_report", "render_report"]
