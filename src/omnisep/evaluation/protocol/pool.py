"""Metrics jobs: one mixture's estimates scored in a worker process while the next items separate."""

from __future__ import annotations

import dataclasses
import multiprocessing

import torch

from omnisep.evaluation import metrics as metric_functions


def init_worker() -> None:
    # Each worker is one process on one core: torch must not spawn its own threads.
    torch.set_num_threads(1)


def score_job(job: dict) -> dict:
    """Score every estimate of one mixture (runs in a pool worker)."""
    target, interferer, mixture = job["target"], job["interferer"], job["mixture"]
    backend, length = job["backend"], job["length"]
    mixture_score = metric_functions.score_mixture(target, interferer, mixture, backend, length)
    scores = {}
    for key, estimate in zip(job["keys"], job["estimates"]):
        if mixture_score is None or key in job.get("unavailable", ()):
            scores[key] = None
            continue
        score = metric_functions.score_estimate(target, interferer, mixture, estimate, mixture_score, backend, length)
        scores[key] = None if score is None else score.to_dict()
    return {
        "index": job["index"],
        "mixture": None if mixture_score is None else dataclasses.asdict(mixture_score),
        "scores": scores,
    }


class InProcessPool:
    """The pool interface for workers=0: simple, debuggable, used by tests."""

    class _Done:
        def __init__(self, value):
            self._value = value

        def get(self):
            return self._value

    def apply_async(self, function, args):
        return self._Done(function(*args))

    def terminate(self):
        pass

    def close(self):
        pass

    def join(self):
        pass


def make_pool(workers: int):
    """A process pool of ``workers`` single-threaded processes, or the in-process stand-in for 0."""
    if workers == 0:
        return InProcessPool()
    return multiprocessing.get_context("spawn").Pool(workers, initializer=init_worker)
