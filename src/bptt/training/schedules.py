"""Learning-rate schedules: ``lr(step)`` for ``step = 0, 1, 2, …``.

==========  =======================================================================
kind        lr(step)  (after ``warmup`` steps of linear ramp from lr/warmup to lr)
==========  =======================================================================
constant    lr
cosine      min_lr + (lr − min_lr) · ½ (1 + cos(π · s / (total − warmup)))
step        lr · gamma^⌊s / step_size⌋
==========  =======================================================================

where ``s = step − warmup``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import _checks

__all__ = ["SCHEDULES", "Schedule"]

SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule; call it with the step number.

    Parameters
    ----------
    lr : float
        Peak learning rate.
    kind : str
        ``"constant"``, ``"cosine"`` or ``"step"``.
    warmup : int
        Steps of linear warm-up before the schedule proper.
    total_steps : int or None
        Length of the run (needed by ``"cosine"``).
    min_lr : float
        Floor of ``"cosine"``.
    step_size : int
        Steps between decays for ``"step"``.
    gamma : float
        Decay factor for ``"step"``.
    """

    lr: float
    kind: str = "constant"
    warmup: int = 0
    total_steps: int | None = None
    min_lr: float = 0.0
    step_size: int = 1000
    gamma: float = 0.5

    def __post_init__(self) -> None:
        where = "Schedule"
        if self.kind not in SCHEDULES:
            raise ValueError(f"{where}: kind must be one of {list(SCHEDULES)}, got {self.kind!r}")
        _checks.real(self.lr, "lr", where)
        for name in ("min_lr", "gamma"):
            _checks.real(getattr(self, name), name, where, strict=False)
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"{where}: warmup must be an integer ≥ 0, got {self.warmup!r}")
        if not isinstance(self.step_size, int) or self.step_size < 1:
            raise ValueError(f"{where}: step_size must be a positive integer, got {self.step_size!r}")
        if self.kind == "cosine" and (not isinstance(self.total_steps, int) or self.total_steps <= self.warmup):
            raise ValueError(f"{where}: cosine needs total_steps > warmup ({self.warmup}), got {self.total_steps!r}")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        s = step - self.warmup
        if self.kind == "cosine":
            span = self.total_steps - self.warmup  # type: ignore[operator]
            frac = min(s / span, 1.0)
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
        if self.kind == "step":
            return self.lr * self.gamma ** (s // self.step_size)
        return self.lr
