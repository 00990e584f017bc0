"""Default locations (light module: importing it loads nothing heavy)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPORTS_DIR = REPO_ROOT / "reports"
BASELINES_DIR = REPO_ROOT / "baselines"
DEFAULT_DB = "reports/history.sqlite"
