"""Learning-rate schedule of the paper: linear warm-up, linear decay, then constant.

The scale is a pure function of the step, so resuming needs nothing but the
step count: no scheduler object whose hidden state could drift.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupLinearDecay:
    warmup_steps: int = 5000
    decay_steps: int = 100_000
    final_scale: float = 0.1

    def scale(self, step: int) -> float:
        """Multiplier of the base lr for the update made at ``step`` (0-based)."""
        if step < self.warmup_steps:
            # (step + 1) so that the very first update is not a wasted zero-lr step.
            return (step + 1) / self.warmup_steps
        if step >= self.decay_steps:
            return self.final_scale
        progress = (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps)
        return 1.0 - (1.0 - self.final_scale) * progress
