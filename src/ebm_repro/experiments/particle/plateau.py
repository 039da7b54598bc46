"""The one stopping rule every E10 model trains under: stop when the held-out error stops improving."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Plateau:
    """Early stopping on a validation error, updated once per evaluation.

    An evaluation *improves* when its error is below (1 - min_rel_improvement) x the error of the last
    improving evaluation; training stops after `patience` evaluations in a row that do not improve.
    Separately, `best` tracks the lowest error seen at all (any margin): those are the weights to keep.
    A non-finite error never improves and is never best.
    """
    patience: int
    min_rel_improvement: float
    ref: float = math.inf        # error of the last improving evaluation
    wait: int = 0                # evaluations since then
    best: float = math.inf       # lowest error seen
    best_iter: int = 0           # iteration of `best` (0: none yet)
    n_evals: int = 0

    def update(self, it: int, error: float) -> tuple[bool, bool]:
        """Record the error measured after iteration `it` -> (is the new best, stop now)."""
        self.n_evals += 1
        finite = math.isfinite(error)
        if finite and error < self.ref * (1 - self.min_rel_improvement):
            self.ref, self.wait = error, 0
        else:
            self.wait += 1
        new_best = finite and error < self.best
        if new_best:
            self.best, self.best_iter = error, it
        return new_best, self.wait >= self.patience
