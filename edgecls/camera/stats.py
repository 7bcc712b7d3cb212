"""Latency samples per stage and their percentiles (p50/p90/p99, mean), as the field reports them.

A camera loop runs for weeks, so `StageTimer` holds bounded memory: every sample lands in a log-spaced histogram
(1% wide bins, 1 µs to 100 s: percentiles within ±0.5%) and the most recent `keep` samples stay exact. While a run
has no more samples than that, its summary is exact; beyond, percentiles come from the histogram and the summary
says so. Count, mean, min and max stay exact either way.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

LOW_MS, HIGH_MS, RATIO = 1e-3, 1e5, 1.01
_LOG_RATIO = math.log(RATIO)
_BINS = math.ceil(math.log(HIGH_MS / LOW_MS) / _LOG_RATIO) + 1


def summarize(samples_ms) -> dict:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "n": int(values.size),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


class StageStats:
    """One stage's samples: exact while few, a log histogram plus the recent window once many."""

    def __init__(self, keep: int) -> None:
        self.recent: deque[float] = deque(maxlen=keep)
        self.counts = [0] * _BINS
        self.n, self.total, self.min, self.max = 0, 0.0, math.inf, -math.inf

    def add(self, ms: float) -> None:
        self.recent.append(ms)
        self.counts[min(_BINS - 1, max(0, int(math.log(max(ms, LOW_MS) / LOW_MS) / _LOG_RATIO)))] += 1
        self.n += 1
        self.total += ms
        self.min, self.max = min(self.min, ms), max(self.max, ms)

    def summary(self) -> dict:
        if self.n <= len(self.recent):
            return {**summarize(self.recent), "percentiles": "exact"}
        cumulative = np.cumsum(self.counts)

        def quantile(q: float) -> float:
            index = int(np.searchsorted(cumulative, q * self.n))
            return min(self.max, max(self.min, LOW_MS * RATIO ** (index + 0.5)))  # the bin's geometric centre

        return {
            "n": self.n,
            "p50": quantile(0.5),
            "p90": quantile(0.9),
            "p99": quantile(0.99),
            "mean": self.total / self.n,
            "min": self.min,
            "max": self.max,
            "percentiles": f"±{(RATIO - 1) / 2:.1%} (log histogram of all "
            f"{self.n} samples; the last {len(self.recent)} kept)",
        }


class StageTimer:
    """Per-frame milliseconds for named stages, in bounded memory (about 1 h of 30 fps frames kept exactly)."""

    def __init__(self, keep: int = 100_000) -> None:
        self.keep = keep
        self.stages: dict[str, StageStats] = {}

    def add(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            if stage not in self.stages:
                self.stages[stage] = StageStats(self.keep)
            self.stages[stage].add(ms)

    def recent(self, stage: str) -> list[float]:
        """The stage's most recent samples (all of them while the run is short): what histograms are drawn from."""
        return list(self.stages[stage].recent) if stage in self.stages else []

    def summary(self) -> dict[str, dict]:
        return {stage: stats.summary() for stage, stats in self.stages.items()}
