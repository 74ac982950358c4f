"""Is a scored network alive and stable? The rule every search applies, whatever its metric.

A training-free metric scores an untrained network, and some cells are degenerate in ways
that some metric mistakes for quality: a cell whose state is a product of earlier states stays
zero for ever, and a zero synflow or gradient norm is the *best* value of a lower-is-better
metric. So the verdict does not come from the metric, but from the states of the scoring
pass itself (docs/trustworthy-winners.md):

* **Degenerate** (the result fails, with the reason): the states entering the first cell at
  the scored steps (the zero initial state aside) are not finite, or are the same for every
  input sequence of the batch: all zero, constant, or a function of the step alone. Such a
  cell carries no information about its input, so nothing above it can either.
* **Runaway** (recorded for every architecture; the stability guard flags it): how far the
  cell's state grows when its recurrence starts from a state of a trained network's scale.
  At the initial weights the scored states are small, so a cell whose new state is a product
  of unbounded terms looks calm there and diverges once training grows its states: see
  :func:`stress_growth`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Degenerate: every unit's spread over the batch at every scored step is at most this
# fraction of the largest state magnitude (float32 rounding of equal rows stays far below it).
SPREAD_TOLERANCE = 1e-6
# The verdict's first look: about this many units, evenly spaced.
SAMPLED_UNITS = 64
# The stress test: the recurrence of the first cell runs STRESS_STEPS steps on the first
# STRESS_SEQUENCES input sequences, from random states of RMS STRESS_SCALE (two sequences
# are enough to see a runaway and cost about 4% more columns in the forward they ride in).
STRESS_SCALE = 10.0
STRESS_STEPS = 10
STRESS_SEQUENCES = 2
# The guard's default threshold on the stress growth (log10 of the largest state RMS over the
# stress steps divided by STRESS_SCALE); chosen in docs/trustworthy-winners.md.
DEFAULT_STABILITY_THRESHOLD = 1.0
# float32 overflows near 3.4e38: a growth beyond 10^40 of the scale is an overflow.
GROWTH_LIMIT = 40.0
# details key of the stress growth (the flag is nas_engine.result.FLAGGED)
STABILITY = "stress_growth"


class DegenerateCell(RuntimeError):
    """The scoring pass shows a dead or non-finite network (the message says which)."""


@dataclass(frozen=True)
class Verdict:
    """What the scoring pass shows of a network: why it is degenerate (None: it is not)."""

    degenerate: str | None


def state_verdict(layers: Sequence[torch.Tensor]) -> Verdict:
    """The verdict on the states entering each cell (layer 1 first), each (T, B, H) with step 0
    the zero initial state. Any non-finite state in any layer is degenerate; a first layer
    whose scored states (steps 1..T-1) are the same for every sequence is dead. With one step
    or one sequence there is nothing to compare, and no verdict.

    Cheap beside a score: one sum per layer finds a NaN or an infinity; a sample of
    ``SAMPLED_UNITS`` units that differ across the batch proves the cell alive (every unit of
    a cell is built alike, so a live cell's units all vary), and only a sample that does not
    is checked on every unit."""
    for number, states in enumerate(layers, start=1):
        # An infinity or a NaN makes the sum non-finite; a non-finite sum of finite states
        # (an overflow, past 1e38 / the count) is told apart by the exact check.
        if not math.isfinite(float(states.sum())) and not bool(torch.isfinite(states).all()):
            return Verdict(f"degenerate cell: layer {number}'s states are not finite")
    first = layers[0][1:]
    if first.shape[0] == 0 or first.shape[1] < 2:
        return Verdict(None)
    stride = max(1, first.shape[2] // SAMPLED_UNITS)
    if stride > 1 and _varies(first[:, :, ::stride]):
        return Verdict(None)
    if _varies(first):
        return Verdict(None)
    low, high = torch.aminmax(first, dim=1)
    if max(float(high.max()), -float(low.min())) == 0.0:
        return Verdict("degenerate cell: layer 1's states are all zero (a dead cell)")
    tolerance = SPREAD_TOLERANCE * max(float(high.max()), -float(low.min()))
    over_steps = float((high.amax(dim=0) - low.amin(dim=0)).max())
    what = "constant" if over_steps <= tolerance else "the same for every input sequence"
    return Verdict(f"degenerate cell: layer 1's states are {what} (a dead cell)")


def _varies(states: torch.Tensor) -> bool:
    """Whether some unit's state, at some step, differs across the batch by more than
    ``SPREAD_TOLERANCE`` of the largest state magnitude (of these states)."""
    low, high = torch.aminmax(states, dim=1)
    scale = max(float(high.max()), -float(low.min()))
    return scale > 0.0 and float((high - low).max()) > SPREAD_TOLERANCE * scale


def growth_of(rms: Sequence[float], scale: float = STRESS_SCALE) -> float:
    """log10 of the largest state RMS over the stress steps, divided by the starting scale,
    clipped to [-GROWTH_LIMIT, GROWTH_LIMIT] so that it stays a JSON number: the upper limit
    when a state overflowed or became NaN (a runaway beyond float range), the lower one when
    every state became exactly zero."""
    if not all(math.isfinite(v) for v in rms):
        return GROWTH_LIMIT
    peak = max(rms, default=0.0)
    if peak <= 0.0:
        return -GROWTH_LIMIT
    return max(-GROWTH_LIMIT, min(GROWTH_LIMIT, math.log10(peak / scale)))
