"""Statistics on raw samples, computed when reading, never stored."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); q in [0, 100]."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    return percentile_of_sorted(xs, q) if xs else None


def percentile_of_sorted(xs: Sequence[float] | NDArray[np.float64], q: float) -> float:
    """percentile() of values already sorted, none missing (a list or a numpy array)."""
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
