"""Walk-forward jobs spread over the ranks of a torchrun process group: each (fold, ensemble member) model is a job
of its own, independent of every other, so whole jobs go to ranks instead of one model being split over them.

Every rank holds the same folds (each prepares the same data from the same candles), trains only its own jobs,
and rank 0 gathers every job's result and goes on as a single process would. A job is the same computation
wherever it runs: its seeds come from its (fold, member) position, and `fit` re-derives every random draw from
them, so a fold's forecasts are the floats one process computes, given the same number of intra-op threads
(a different thread count may sum in a different order).

    owner = job_owner(index, world_size)        # round robin over the flattened (fold, member) list
    if run_fold_jobs(n_folds, ensemble, train_job, on_fold):   # True on the rank that reports
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reformer.training import distributed

__all__ = ["fold_jobs", "job_owner", "run_fold_jobs"]

_R = TypeVar("_R")


def fold_jobs(n_folds: int, ensemble: int) -> list[tuple[int, int]]:
    """Every (fold, member) job in the order one process trains them: fold by fold, members by seed."""
    return [(fold, member) for fold in range(n_folds) for member in range(ensemble)]


def job_owner(index: int, world_size: int) -> int:
    """The rank that trains the job at `index` of `fold_jobs`: round robin, so neighbouring members of a fold
    (whose training sets are the same size) go to different ranks and a fold's members finish together."""
    return index % world_size


def run_fold_jobs(n_folds: int, ensemble: int, train_job: Callable[[int, int], _R],
                  on_fold: Callable[[int, list[_R]], None]) -> bool:
    """Train every (fold, member) job once, on this process or spread over the process group, and hand each
    fold's results, in member order, to `on_fold` in fold order on the rank that reports.

    Args:
        n_folds, ensemble: the jobs, `fold_jobs(n_folds, ensemble)`.
        train_job: `(fold, member) -> result`; its result must be picklable when the group has several ranks.
        on_fold: `(fold, results)`; called on rank 0 only, after all of that fold's jobs (one process: as each
            fold ends; several: once every rank's jobs are gathered).

    Returns:
        Whether this process is the one that reports (rank 0, or the only process).
    """
    if not distributed.is_distributed():
        for fold in range(n_folds):
            on_fold(fold, [train_job(fold, member) for member in range(ensemble)])
        return True
    rank, world = distributed.rank(), distributed.world_size()
    mine = {job: train_job(*job) for index, job in enumerate(fold_jobs(n_folds, ensemble))
            if job_owner(index, world) == rank}
    gathered = distributed.gather_objects(mine)
    if gathered is None:
        return False
    results: dict[tuple[int, int], _R] = {}
    for part in gathered:
        results.update(part)
    missing = [job for job in fold_jobs(n_folds, ensemble) if job not in results]
    assert not missing, f"no rank returned walk-forward jobs {missing}"
    for fold in range(n_folds):
        on_fold(fold, [results[(fold, member)] for member in range(ensemble)])
    return True
