"""The run folder: what a training run leaves in `--out`, and the rule that nothing there is replaced unasked
(`--resume` continues a run, `--force` starts over)."""

from __future__ import annotations

import shutil
from pathlib import Path

from reformer.errors import UserInputError

__all__ = ["check_run_dir", "clear_run_dir", "run_contents"]

_RUN_FILES = ("best", "last", "metrics.csv", "evaluation.json", "walkforward.json", "members")


def run_contents(run_dir: Path) -> list[str]:
    """What a training run left in `run_dir`: its checkpoints, metrics, evaluation, walk-forward folds, ensemble
    members, by name ([] for a missing or empty folder, or one of other files only)."""
    if not run_dir.is_dir():
        return []
    return sorted(path.name for path in run_dir.iterdir()
                  if path.name in _RUN_FILES or (path.name.startswith("fold_") and path.is_dir()))


def check_run_dir(run_dir: Path, *, resume: bool = False, force: bool = False, resumable: bool = True) -> None:
    """Refuse to train into a folder that holds a run, unless told what to do with it: `resume` continues it (its
    `last/` is checked by the caller), `force` starts over (`clear_run_dir`). `resumable`: this run can resume.

    Raises:
        UserInputError: both asked for, or a run is there and neither was.
    """
    if resume and force:
        raise UserInputError(f"--resume continues the run in {run_dir} and --force discards it: pass one of them")
    found = [] if resume or force else run_contents(run_dir)
    if found:
        held = "a walk-forward run" if any(n.startswith(("fold_", "walkforward")) for n in found) else "a training run"
        fix = "continue it with --resume or " if resumable and (run_dir / "last").is_dir() else ""
        raise UserInputError(f"{run_dir} holds {held} already ({', '.join(found)}): {fix}start over with --force "
                             "(replaces the run's files), or pass another --out")


def clear_run_dir(run_dir: Path) -> None:
    """Remove what a training run left in `run_dir` (`run_contents`, and a walk-forward's predictions.csv); other
    files in it stay."""
    names = run_contents(run_dir)
    if "walkforward.json" in names and (run_dir / "predictions.csv").is_file():
        names.append("predictions.csv")
    for name in names:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
