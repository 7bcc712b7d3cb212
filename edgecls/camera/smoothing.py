"""N-of-M voting over frames: a decision changes only when the frames agree, not on every flicker.

A single misread frame (motion blur, a passing shadow) must not make a robot stop and go again; requiring
N votes among the last M frames trades M/fps seconds of delay for that stability.
"""

from __future__ import annotations

from collections import deque

from edgecls.errors import ConfigError


class NofM:
    def __init__(self, n: int = 3, m: int = 5):
        if not 1 <= n <= m:
            raise ConfigError(f"N-of-M voting needs 1 ≤ N ≤ M, got {n} of {m}")
        self.n = n
        self.votes: deque[bool] = deque(maxlen=m)

    def update(self, vote: bool) -> bool:
        """Add this frame's vote; True while at least N of the last M frames voted True."""
        self.votes.append(vote)
        return sum(self.votes) >= self.n
