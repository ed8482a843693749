"""Ctrl-C during training: an epoch's files are written whole (`interrupts_held`), and the interrupt leaves
`fit` as `TrainingInterrupted`, which says how to go on (resume, or start over)."""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TrainingInterrupted", "as_training_interrupted", "interrupts_held"]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`, raised once the run directory holds whole epochs only.

    Attributes:
        run_dir: the run directory (None: nothing is kept).
        epoch: the epoch its `last/` holds (0: none ended).
        not_resumed: None for a run `--resume` continues, else what it is instead ("a walk-forward run").
    """

    def __init__(self, run_dir: Path | None, epoch: int, not_resumed: str | None = None) -> None:
        super().__init__(f"interrupted after epoch {epoch}")
        self.run_dir, self.epoch, self.not_resumed = run_dir, epoch, not_resumed

    def hint(self) -> str:
        """One line on how to go on; `...` stands for the interrupted command's other options."""
        if self.run_dir is None:
            return "interrupted: no run directory, nothing was kept"
        out = shlex.quote(str(self.run_dir))
        if self.not_resumed is not None:
            return f"interrupted: {self.not_resumed} is not resumed; start it over with `reformer train ... --force " \
                   f"--out {out}`"
        if self.epoch == 0:
            return f"interrupted before the first epoch ended, nothing was kept: `reformer train ... --out {out}` " \
                   "starts again"
        return f"interrupted: resume with `reformer train ... --resume --out {out}` (last/ holds epoch {self.epoch})"


@contextmanager
def as_training_interrupted(run_dir: Path | None, saved: Callable[[], int]) -> Iterator[None]:
    """A `KeyboardInterrupt` in the block leaves it as `TrainingInterrupted`, `saved()` the epoch `last/` holds."""
    try:
        yield
    except KeyboardInterrupt:
        raise TrainingInterrupted(run_dir, saved() if run_dir is not None else 0) from None


@contextmanager
def interrupts_held() -> Iterator[None]:
    """A Ctrl-C in the block is raised when the block ends: an epoch's files are written whole. Only the main
    thread receives signals, and a handler other than Python's default is left alone."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt
