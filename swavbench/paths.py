"""Default locations (light module: importing it loads nothing heavy)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPORTS_DIR = REPO_ROOT / "reports"
BASELINES_DIR = REPO_ROOT / "baselines"
# reference baselines shipped inside the package (PASSL's published figures): baselines/passl-a100/...
PACKAGED_BASELINES = Path(__file__).resolve().parent / "resources" / "baselines"
DEFAULT_DB = "reports/history.sqlite"
