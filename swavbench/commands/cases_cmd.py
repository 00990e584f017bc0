"""`swavbench cases [--profile cpu|gpu] [--baseline-dir DIR] [--json]`: the cases and their baselines here."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from swavbench.harness.baselines import baseline_path
from swavbench.harness.cases import DEVICE_PROFILES, all_cases, plan, skip_reason
from swavbench.harness.prepare import default_device_profile
from swavbench.harness.runner import profile_of
from swavbench.paths import home


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cases", help="list the cases and which have a baseline on this machine")
    parser.add_argument(
        "--profile",
        choices=DEVICE_PROFILES,
        default=None,
        help="device profile (default: gpu if paddle sees one, else cpu)",
    )
    parser.add_argument("--baseline-dir", type=Path, default=home().baselines, metavar="DIR",
                        help="baselines root (default: the project home's baselines/)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def case_rows(device_profile: str, baseline_dir: Path) -> tuple[str, list[dict]]:
    """(machine profile key, one row per case)."""
    rows, key = [], None
    for case in all_cases():
        p = plan(case, device_profile)
        key = key or profile_of(p)
        path = baseline_path(baseline_dir, key, case.id)
        scale = p.scale
        rows.append(
            {
                "case": case.id,
                "passl_name": case.passl_name,
                "topology": f"{case.gpu.nnodes}x{case.gpu.devices_per_node}",
                "runs_as": f"{scale.nnodes}x{scale.devices_per_node}",
                "steps": scale.max_train_step,
                "baseline": str(path) if path.exists() else None,
                "skip": skip_reason(case),
            }
        )
    return key or "", rows


def run(args: argparse.Namespace) -> int:
    device_profile = args.profile or default_device_profile()
    key, rows = case_rows(device_profile, args.baseline_dir)
    if args.json:
        print(json.dumps({"device_profile": device_profile, "profile": key, "cases": rows}, indent=2))
        return 0
    print(f"device profile {device_profile}; baselines for this machine: {args.baseline_dir}/{key}/")
    table = [("case", "topology", "runs as", "steps", "baseline here", "PASSL name")]
    for r in rows:
        state = "skipped: needs issue 4" if r["skip"] else ("yes" if r["baseline"] else "MISSING")
        table.append((r["case"], r["topology"], r["runs_as"], str(r["steps"]), state, r["passl_name"]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    missing = [r["case"] for r in rows if not r["baseline"] and not r["skip"]]
    if missing:
        print(f"record missing baselines: swavbench update-baseline {' '.join(missing)} --profile {device_profile}")
    for r in rows:
        if r["skip"]:
            print(f"skip {r['case']}: {r['skip']}")
    return 0
