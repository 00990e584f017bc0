"""Property-based fuzz of every input boundary, through the real CLI entry point in-process (issue 13).

Generated malformed worker logs, steps files, baselines and run records, and injected write faults. For
every example: the exit code is one the README documents for that command (never 70, a bug), stderr has
no traceback, the output is bounded, and after a failed write the previous baseline is byte-identical
(after a successful one it loads). Fixed seed, small example budget (well under a minute in `make test`);
`SWAVBENCH_FUZZ=long pytest tests/test_fuzz.py` runs 20x the examples.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

from badinput import CASE, CPU_BASELINE, CPU_LOG, PROFILE, log_dir, log_lines, record, run_cli, run_folder
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

LONG = os.environ.get("SWAVBENCH_FUZZ") == "long"
MAX_OUTPUT = 200_000  # characters of stdout + stderr for one command on these small inputs
MAX_OUTPUT_LINE = 6_000  # one printed line (a text field is stored up to 4096 characters)
BASELINE_REL = Path("baselines") / PROFILE / f"{CASE}.json"


def fuzz(examples: int):
    """Settings of one fuzz test: fixed seed, `examples` (x20 with SWAVBENCH_FUZZ=long), no deadline."""

    def wrap(test):
        test = settings(max_examples=examples * (20 if LONG else 1), deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))(test)
        return seed(13)(test)

    return wrap


def check(result: tuple[int, str, str], allowed: set) -> None:
    code, out, err = result
    assert code in allowed, (code, out[-2000:], err[-2000:])
    assert "Traceback (most recent call last)" not in err, err[-3000:]
    assert len(out) + len(err) <= MAX_OUTPUT, (len(out), len(err))
    longest = max((len(line) for line in (out + err).splitlines()), default=0)
    assert longest <= MAX_OUTPUT_LINE, longest


# --- generators --------------------------------------------------------------------------------------------

ODD_NUMBERS = ["", " ", "nan", "NaN", "inf", "-inf", "1e999", "-1", "0", "1e30", "1e-300", "1e-99999", "8.3x",
               "\uff18.\uff13", "0x10", "1_0", "\ufffd", "8.31,987", "1.0 GB", "12 images/sec", "[Train]"]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
VALUE_TEXT = st.one_of(st.sampled_from(ODD_NUMBERS), st.floats().map(repr), TEXT,
                       st.integers(1, 20_000).map(lambda n: " " * n + "1"))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.just(10**400), st.floats(), TEXT,
                    st.sampled_from(["", "8.31987", "20/78", "../x", "a\nb", "x" * 5000, "pass", "failed"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)
FIELDS = ["lr", "loss", "batch_cost", "reader_cost", "ips", "max mem", "eta"]

LINE_EDITS = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 40), st.sampled_from(FIELDS), VALUE_TEXT),
    st.tuples(st.just("repeat_field"), st.integers(0, 40), st.sampled_from(FIELDS), VALUE_TEXT),
    st.tuples(st.just("drop_field"), st.integers(0, 40), st.sampled_from(FIELDS), st.just("")),
    st.tuples(st.just("copy_line"), st.integers(0, 40), st.just(""), st.just("")),
    st.tuples(st.just("drop_line"), st.integers(0, 40), st.just(""), st.just("")),
    st.tuples(st.just("insert"), st.integers(0, 40), st.just(""), st.one_of(
        TEXT, st.sampled_from(["\r", "\x1b[31m", "FatalError: x", "Traceback (most recent call last):",
                               "[swavbench] run header: {", "passl INFO: [Train][Epoch 1/1][Iter: 20/78] ips: 1"]),
        st.integers(1, 300_000).map(lambda n: "FatalError: " + "y" * n))),
    st.tuples(st.just("marker"), st.integers(0, 40), st.integers(0, 10**12).map(str), st.integers(0, 10**12).map(str)),
    st.tuples(st.just("header"), st.just(0), st.just(""), JSON.map(lambda v: json.dumps(v, allow_nan=True))),
)
BYTE_EDITS = st.one_of(st.tuples(st.just("cut"), st.floats(0, 1), st.just(b"")),
                       st.tuples(st.just("bytes"), st.floats(0, 1), st.binary(min_size=1, max_size=12)))


def field_edit(line: str, what: str, name: str, value: str) -> str:
    if "[Train]" not in line:
        return line
    start = line.find(f"{name}: ")
    if what == "repeat_field" or start < 0:
        return line.replace(" eta:", f" {name}: {value}, eta:", 1)
    end = line.find(",", start) if name != "eta" else len(line)
    end = len(line) if end < 0 else end
    return line[:start] + ("" if what == "drop_field" else f"{name}: {value}") + line[end:]


def edit_lines(lines: list[str], edits: list) -> list[str]:
    for what, at, name, value in edits:
        i = at % max(len(lines), 1)
        if not lines:
            lines = [value] if what == "insert" else lines
        elif what in ("value", "repeat_field", "drop_field"):
            lines[i] = field_edit(lines[i], what, name, value)
        elif what == "copy_line":
            lines.insert(i, lines[i])
        elif what == "drop_line":
            del lines[i]
        elif what == "insert":
            lines.insert(i, value)
        elif what == "marker":
            lines[i] = lines[i].replace("[Iter: 20/78]", f"[Iter: {name}/{value}]")
        elif what == "header":
            lines = [line.split("run header: ")[0] + "run header: " + value if "run header:" in line else line
                     for line in lines]
    return lines


def edit_bytes(data: bytes, edits: list) -> bytes:
    for what, where, raw in edits:
        at = int(where * len(data))
        data = data[:at] if what == "cut" else data[:at] + raw + data[at:]
    return data


def set_path(data: object, path: list[str], value: object) -> object:
    """`data` with `value` at the dotted `path` (intermediate objects made; "-" deletes the key)."""
    if not path:
        return value
    if not isinstance(data, dict):
        data = {}
    key = path[0]
    if len(path) == 1 and value == "-":
        data.pop(key, None)
    else:
        data[key] = set_path(data.get(key), path[1:], value)
    return data


def json_edits(keys: list[str]):
    """[(dotted path, value)]: a JSON value, "-" (delete) or a deep nesting, at known or new keys."""
    path = st.one_of(st.sampled_from(keys), TEXT).map(lambda k: k.split("."))
    value = st.one_of(JSON, st.just("-"), st.integers(40, 5_000).map(lambda n: f"deep:{n}"))
    return st.lists(st.tuples(path, value), min_size=1, max_size=4)


def dump(data: object) -> str:
    """JSON text; a "deep:N" string becomes N levels of nested lists (past any recursion limit)."""
    text = json.dumps(data, allow_nan=True)
    while '"deep:' in text:
        start = text.index('"deep:')
        end = text.index('"', start + 1)
        n = int(text[start + 6:end])
        text = text[:start] + "[" * n + "]" * n + text[end + 1:]
    return text


BASELINE_KEYS = ["case", "profile", "config", "schema_version", "metrics", "tolerances", "provenance",
                 "metrics.loss", "metrics.ips", "metrics.ips_steady", "metrics.max_mem", "metrics.marker",
                 "tolerances.ips_pct", "tolerances.loss", "tolerances.max_mem", "provenance.calibration",
                 "provenance.commit", "provenance.paddle_version"]
RECORD_KEYS = ["run_id", "case", "status", "profile", "schema_version", "metrics", "metrics.marker",
               "metrics.loss", "metrics.ips", "message", "steps", "ranks", "checks", "failure", "ips_steady",
               "attempts", "environment", "baseline", "log_lines", "command", "duration_s", "started_utc"]


# --- the properties ----------------------------------------------------------------------------------------

def judged_values_are_measurements(parsed: dict) -> None:
    """What `parse --json` judged (exit 0 or 1): rank 0's records hold measurements, not corrupt values."""
    for rec in parsed["ranks"].get("0", {}).get("records", []):
        assert 0 < rec["ips"] <= 1e9 and rec["batch_cost"] >= 0 and rec["reader_cost"] >= 0, rec
        assert all(v.strip() and (v.lower().lstrip("+-") in ("nan", "inf", "infinity") or math.isfinite(float(v)))
                   for v in rec["metrics"].values()), rec
    summary = parsed["summary"]
    if summary:
        assert math.isfinite(summary["ips"]) and summary["ips"] > 0, summary


@fuzz(60)
@given(edits=st.lists(LINE_EDITS, max_size=5), raw=st.lists(BYTE_EDITS, max_size=2), json_out=st.booleans())
def test_a_malformed_worker_log_is_judged_or_refused_in_one_line(edits, raw, json_out):
    with tempfile.TemporaryDirectory() as tmp:
        logs = log_dir(Path(tmp))
        text = "\n".join(edit_lines(log_lines(), edits)) + "\n"
        (logs / "workerlog.0").write_bytes(edit_bytes(text.encode("utf-8", "surrogateescape"), raw))
        parsed = run_cli("parse", logs, "--json")
        check(parsed, {0, 2, 3})
        if parsed[0] in (0, 1):
            judged_values_are_measurements(json.loads(parsed[1]))
        flag = ("--json",) if json_out else ()
        check(run_cli("parse", logs), {0, 2, 3})
        check(run_cli("compare", logs, "--baseline", CPU_BASELINE, "--profile", PROFILE, *flag), {0, 1, 2, 3})


STEP_KEYS = ["step", "epoch", "iter", "loss", "lr", "batch_cost", "reader_cost", "rank"]
TRICKY = st.one_of(st.sampled_from(["3", "1.2", "", True, False, None, -1, 0, 10**20, 1e-300, 1e300, [], {}]),
                   st.floats(), SCALARS)


@fuzz(40)
@given(rank=st.integers(0, 3), line=st.integers(0, 25), changes=st.dictionaries(st.sampled_from(STEP_KEYS), TRICKY,
       min_size=1, max_size=3), whole=st.one_of(st.none(), JSON), raw=st.lists(BYTE_EDITS, max_size=2))
def test_a_malformed_steps_file_is_judged_or_refused_in_one_line(rank, line, changes, whole, raw):
    with tempfile.TemporaryDirectory() as tmp:
        logs = log_dir(Path(tmp))
        steps = logs / f"steps.{rank}.jsonl"
        lines = steps.read_text().splitlines()
        i = line % len(lines)
        row = whole if whole is not None else {**json.loads(lines[i]), **changes}
        lines[i] = json.dumps(row, allow_nan=True)
        steps.write_bytes(edit_bytes(("\n".join(lines) + "\n").encode(), raw))
        check(run_cli("compare", logs, "--baseline", CPU_BASELINE, "--profile", PROFILE), {0, 1, 2, 3})


FAULTS = st.sampled_from([None, None, "ENOSPC", "EROFS", "EACCES"])


def inject(fault: str) -> ExitStack:
    """A write fault while update-baseline writes: disk full at fsync, read-only lock, no permission to rename."""
    stack = ExitStack()
    if fault == "ENOSPC":
        stack.enter_context(mock.patch("os.fsync", side_effect=OSError(errno.ENOSPC, "No space left on device")))
    elif fault == "EROFS":
        real = os.open

        def read_only(path, flags, *args, **kwargs):
            if str(path).endswith(".lock"):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real(path, flags, *args, **kwargs)

        stack.enter_context(mock.patch("os.open", read_only))
    elif fault == "EACCES":
        stack.enter_context(mock.patch("os.replace", side_effect=PermissionError(errno.EACCES, "Permission denied")))
    return stack


def update_and_check(tmp: Path, run: Path, fault: str, allowed: set) -> None:
    """update-baseline --from RUN over the existing file: a failure leaves it byte-identical, exit 6 for a fault."""
    from swavbench.harness.baselines import load_baseline

    path = tmp / BASELINE_REL
    before = path.read_bytes() if path.exists() else None
    with inject(fault):
        result = run_cli("update-baseline", CASE, "--profile", "gpu", "--baseline-dir", tmp / "baselines",
                         "--from", run)
    check(result, allowed | ({6} if fault else set()))
    if result[0] != 0:
        assert (path.read_bytes() if path.exists() else None) == before
        assert not [p.name for p in path.parent.glob("*.tmp")] if path.parent.exists() else True
    else:
        assert fault is None and load_baseline(path).case == CASE


@fuzz(50)
@given(edits=json_edits(BASELINE_KEYS), raw=st.lists(BYTE_EDITS, max_size=1), fault=FAULTS)
def test_a_malformed_baseline_is_refused_in_one_line_and_never_half_replaced(edits, raw, fault):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = json.loads(CPU_BASELINE.read_text())
        for path, value in edits:
            data = set_path(data, path, value)
        path = tmp / BASELINE_REL
        path.parent.mkdir(parents=True)
        path.write_bytes(edit_bytes(dump(data).encode("utf-8", "surrogateescape"), raw))
        check(run_cli("compare", CPU_LOG, "--baseline", path, "--profile", PROFILE), {0, 1, 2, 3})
        update_and_check(tmp, run_folder(tmp), fault, {0})  # an unreadable old file is replaced, and said so


@fuzz(25)
@given(edits=json_edits(RECORD_KEYS), raw=st.lists(BYTE_EDITS, max_size=1), fault=FAULTS)
def test_a_malformed_run_record_is_skipped_or_refused_in_one_line(edits, raw, fault):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        good = run_folder(tmp, name="good")
        assert run_cli("update-baseline", CASE, "--profile", "gpu", "--baseline-dir", tmp / "baselines",
                       "--from", good)[0] == 0
        rec: object = {**record(), "run_id": f"20261128T200000Z-{CASE}-fz01"}
        for path, value in edits:
            rec = set_path(rec, path, value)
        runs = tmp / "runs"
        run = run_folder(runs, name="20261128T200000Z-fuzz", record_text=dump(rec))
        (run / "result.json").write_bytes(edit_bytes((run / "result.json").read_bytes(), raw))
        update_and_check(tmp, run, fault, {0, 2, 3})
        db = tmp / "h.sqlite"
        check(run_cli("history", "import", runs, "--db", db), {0, 3})
        check(run_cli("report", "--runs", runs, "--db", db, "--out", tmp / "r.html"), {0})
        assert (tmp / "r.html").stat().st_size < 2_000_000


def test_the_generators_make_what_the_properties_need():
    """The strategies reach the bad inputs the issue lists (else the fuzz could pass by missing them)."""
    lines = edit_lines(log_lines(), [("value", 11, "ips", "-1"), ("repeat_field", 11, "loss", "1"),
                                     ("marker", 11, "99", "0")])
    assert "ips: -1," in lines[11] and lines[11].count("loss:") == 2 and "[Iter: 99/0]" in lines[11]
    assert dump({"a": "deep:3", "b": math.nan}) == '{"a": [[[]]], "b": NaN}'
    assert set_path({"m": {"x": 1}}, ["m", "x"], "-") == {"m": {}}
