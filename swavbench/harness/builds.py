"""The two sides of an A/B run: which swavbench source tree the ranks import, and which interpreter runs them.

A REF (`swavbench ab CASE --ref REF --cand REF`) is one of:
- a directory holding a swavbench source tree (`<dir>/swavbench/__init__.py`), e.g. `.` or another checkout:
  its code, this interpreter;
- an interpreter (an executable file) or a venv directory (`<venv>/bin/python`): another Paddle build, with
  the candidate's code (the working tree unless --cand names a tree or revision);
- otherwise a git revision of this project (`HEAD~1`, a commit, a tag): checked out into a temporary
  `git worktree` (removed afterwards, also on Ctrl-C or failure), imported from there, this interpreter.
The ranks of a side run `swavbench.cli train ...` imported from the side's tree (first on sys.path, and on
PYTHONPATH for their children), so the tree's code and its configs (swavbench/resources) are what trains,
whatever is installed and whatever the current directory holds.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Mapping, Optional

from swavbench.errors import EnvironmentProblem, SwavbenchError

# The folder holding the swavbench package that is imported now: a checkout (a git repo: revisions can be
# checked out from it), or site-packages for a wheel (no revisions; its source fingerprint still names it)
REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs `swavbench.cli` from the tree given as the first argument (put before everything on sys.path).
BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
        "runpy.run_module('swavbench.cli', run_name='__main__', alter_sys=True)")  # fmt: skip


@dataclass(frozen=True)
class Build:
    """One side: the tree its ranks import swavbench from and the interpreter that runs them."""

    kind: str  # "tree" | "revision" | "interpreter"
    given: str  # the REF as the user wrote it ("" = the default working tree)
    tree: Path
    python: str
    commit: Optional[str] = None  # full commit of a revision (or of a clean tree at HEAD)

    def describe(self) -> str:
        """`revision 5b4b1a4 (HEAD~1)`, `tree /work/x`, `interpreter /venv/bin/python (code: tree /work/x)`."""
        if self.kind == "interpreter":
            return f"interpreter {self.python} (code: tree {self.tree})"
        run_by = "" if self.python == sys.executable else f" run by {self.python}"
        if self.kind == "revision":
            return f"revision {self.commit[:10] if self.commit else '?'} ({self.given}){run_by}"
        return f"tree {self.tree}" + ("" if self.given else " (working tree)") + run_by

    def worker(self) -> tuple[str, ...]:
        """The rank command (the case's train arguments follow): `swavbench.cli train` imported from the tree,
        or $SWAVBENCH_WORKER (shell-split: a stand-in worker, as for `swavbench run`) on both sides.

        Not `python -m swavbench.cli`: -m puts the current directory first on sys.path, and run from a
        checkout that would import the checkout's swavbench instead of the side's tree."""
        custom = os.environ.get("SWAVBENCH_WORKER")
        return tuple(shlex.split(custom)) if custom else (self.python, "-c", BOOT, str(self.tree), "train")

    def env(self, base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
        """Environment additions for this side's launch: its tree first on PYTHONPATH."""
        old = (os.environ if base is None else base).get("PYTHONPATH", "")
        return {"PYTHONPATH": str(self.tree) + (os.pathsep + old if old else "")}

    def as_dict(self) -> dict:
        return {"kind": self.kind, "given": self.given, "tree": str(self.tree), "python": self.python,
                "commit": self.commit, "description": self.describe()}  # fmt: skip


def _git(*args: str, repo: Path = REPO_ROOT, check: bool = True) -> subprocess.CompletedProcess:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        raise EnvironmentProblem(f"git {' '.join(args)} failed: {err}") from None
    if check and out.returncode != 0:
        last = ((out.stderr or out.stdout).strip().splitlines() or ["no output"])[-1]
        raise SwavbenchError(f"git {' '.join(args)} in {repo}: {last}")
    return out


def resolve_revision(rev: str, repo: Path = REPO_ROOT) -> Optional[str]:
    """The full commit hash `rev` names in `repo`, or None (not a git checkout, or no such revision)."""
    if not (repo / ".git").exists():
        return None
    out = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", repo=repo, check=False)
    return out.stdout.strip() or None if out.returncode == 0 else None


def _venv_python(path: Path) -> Optional[Path]:
    for name in ("bin/python", "bin/python3", "Scripts/python.exe"):
        if (path / name).is_file():
            return path / name
    return None


def is_tree(path: Path) -> bool:
    """True for a directory holding a swavbench source tree."""
    return (path / "swavbench" / "__init__.py").is_file()


def check_interpreter(python: str, tree: Path) -> str:
    """The paddle version the interpreter imports with `tree` first on its path; EnvironmentProblem if none."""
    probe = "import paddle, yaml, numpy; print(paddle.__version__)"
    env = dict(os.environ, **Build("interpreter", python, tree, python).env())
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    except (OSError, subprocess.SubprocessError) as err:
        raise EnvironmentProblem(f"interpreter {python} cannot run: {err}") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"interpreter {python} cannot import paddle, yaml and numpy ({last}): install "
                                 "them in that environment, or name another --ref/--cand")  # fmt: skip
    return out.stdout.strip()


@contextlib.contextmanager
def checkout(
    ref: str, default_tree: Path = REPO_ROOT, repo: Path = REPO_ROOT, python: Optional[str] = None
) -> Iterator[Build]:
    """The Build a REF names (module docstring), run by `python` if given; a revision's temporary worktree
    lives as long as this context."""
    if python:
        with checkout(ref, default_tree, repo) as build:
            check_interpreter(python, build.tree)
            yield replace(build, python=python)
        return
    if not ref:
        yield Build("tree", "", Path(default_tree).resolve(), sys.executable, clean_head(default_tree))
        return
    path = Path(ref).expanduser()
    if path.is_dir() and is_tree(path):
        yield Build("tree", ref, path.resolve(), sys.executable, clean_head(path))
        return
    python = _venv_python(path) if path.is_dir() else (path if path.is_file() and os.access(path, os.X_OK) else None)
    if python is not None:
        check_interpreter(str(python), Path(default_tree))
        yield Build("interpreter", ref, Path(default_tree).resolve(), str(python))
        return
    commit = resolve_revision(ref, repo)
    if commit is None:
        what = "not a swavbench tree, interpreter or venv" if path.exists() else "no such path"
        raise SwavbenchError(f"--ref/--cand {ref!r}: {what}, and not a git revision of {repo}; give a revision "
                             "(HEAD~1, a commit), a checkout directory or an interpreter / venv path")  # fmt: skip
    with worktree(commit, repo) as tree:
        yield Build("revision", ref, tree, sys.executable, commit)


def clean_head(tree: Path) -> Optional[str]:
    """HEAD's full commit when `tree` is a git checkout without changes to tracked files, else None."""
    if not (Path(tree) / ".git").exists():
        return None
    head = resolve_revision("HEAD", Path(tree))
    dirty = _git("status", "--porcelain", "--untracked-files=no", repo=Path(tree), check=False)
    return head if head and dirty.returncode == 0 and not dirty.stdout.strip() else None


@contextlib.contextmanager
def worktree(commit: str, repo: Path = REPO_ROOT) -> Iterator[Path]:
    """A detached `git worktree` of `commit` in a temporary folder, removed (and pruned) on the way out."""
    parent = Path(tempfile.mkdtemp(prefix="swavbench-ab-"))
    tree = parent / "tree"
    _git("worktree", "add", "--detach", "--quiet", str(tree), commit, repo=repo)
    try:
        yield tree
    finally:
        _git("worktree", "remove", "--force", str(tree), repo=repo, check=False)
        shutil.rmtree(parent, ignore_errors=True)
        _git("worktree", "prune", repo=repo, check=False)


SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".json")


def source_fingerprint(tree: Path = REPO_ROOT) -> str:
    """16 hex digits over the swavbench package's source files (code, configs, profiles) of `tree`.

    Two trees with the same fingerprint train the same way, committed or not: a session baseline recorded
    from a modified working tree is rebuilt by that tree while it is unchanged.
    """
    import hashlib

    digest = hashlib.sha256()
    root = Path(tree) / "swavbench"
    for path in sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_info(tree: Path = REPO_ROOT) -> dict:
    """What rebuilds the code that runs now: the tree, its commit (if clean), fingerprint and interpreter.

    Goes into every run record (`build`) and from there into a baseline's provenance, so that a later
    confirmation can run an A/B against the baseline's own build (`reference_for`).
    """
    head = resolve_revision("HEAD", Path(tree)) if (Path(tree) / ".git").exists() else None
    clean = clean_head(tree) if head else None
    return {"tree": str(Path(tree).resolve()), "commit": head, "dirty": bool(head) and clean is None,
            "fingerprint": source_fingerprint(tree), "python": sys.executable}  # fmt: skip


@dataclass(frozen=True)
class Reference:
    """A baseline's own build, as `reference_for` finds it."""

    ref: Optional[str]  # a REF for `checkout`; None = cannot be rebuilt here
    python: Optional[str]  # the recorded interpreter, when it is another one and still exists
    why: str


def reference_for(provenance: Mapping, tree: Path = REPO_ROOT, repo: Path = REPO_ROOT) -> Reference:
    """The baseline's own build for an A/B confirmation, or why it cannot be rebuilt (ref None).

    In order: the same source as `tree` (fingerprint) -> the tree itself; a clean recorded commit this
    repo has -> that revision; an older baseline's short `commit` (whether its tree was modified is not
    recorded: a loss that the revision does not reproduce shows it) -> that revision. A recorded interpreter
    other than this one, if it still exists, runs the reference.
    """
    build = provenance.get("build") if isinstance(provenance.get("build"), dict) else {}
    python = build.get("python")
    other = python if isinstance(python, str) and python != sys.executable and Path(python).is_file() else None
    if build.get("fingerprint") and build["fingerprint"] == source_fingerprint(tree):
        return Reference(str(Path(tree).resolve()), other, "the baseline's source is this tree's (same fingerprint)")
    commit = build.get("commit") if build else provenance.get("commit")
    if build and build.get("dirty"):
        return Reference(None, other, f"the baseline was recorded from a modified tree (commit {str(commit)[:10]} "
                         "plus changes) that is not this one")  # fmt: skip
    if not commit:
        return Reference(None, other, "the baseline's provenance names no commit")
    full = resolve_revision(str(commit), repo)
    if full is None:
        return Reference(None, other, f"the baseline's commit {commit} is not in {repo}")
    how = "its recorded clean commit" if build else "its commit (whether that tree was modified is not recorded)"
    return Reference(full, other, f"the baseline's build: {how} {full[:10]}")
