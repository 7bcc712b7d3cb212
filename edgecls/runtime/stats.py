"""Latency samples per stage and their percentiles (p50/p90/p99, mean), as the field reports them."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def summarize(samples_ms) -> dict:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": int(values.size), "p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean()),
            "min": float(values.min()), "max": float(values.max())}


class StageTimer:
    """Collects per-frame milliseconds for named stages."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def add(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.samples[stage].append(ms)

    def summary(self) -> dict[str, dict]:
        return {stage: summarize(values) for stage, values in self.samples.items()}
