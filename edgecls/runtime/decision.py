"""What a robot acts on: a decision over the last frames, with "unknown" a vote of its own.

One misread frame (motion blur, a passing shadow) must not make a robot stop and go again: a class is decided only
when at least N of the last M frames voted for it, which trades M/fps seconds of delay for that stability. A frame
the bundle calls unknown (below the threshold fitted on validation at export), or below `min_confidence`, votes
"unknown", so a run of doubtful frames decides "unknown" rather than the class that happened to rank first.

Plain Python over `Prediction`s: the camera loop, `tools/robot_loop.py` and a ROS 2 node's image callback
(docs/ros2.md) call the same `Decider.update`.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict, dataclass

from edgecls.errors import ConfigError

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Decision:
    label: str | None  # the class (or "unknown") that ≥ N of the last M frames voted for; None: undecided yet
    votes: int  # how many of the last frames voted for `label` (for the leading vote while undecided)
    frames: int  # how many frames the vote is over: M once M frames were seen
    vote: str  # this frame's own vote

    def describe(self) -> str:
        decided = self.label if self.label is not None else "undecided"
        return f"{decided} ({self.votes} of {self.frames})"

    def to_dict(self) -> dict:
        return asdict(self)


class Decider:
    def __init__(self, n: int = 3, m: int = 5, min_confidence: float = 0.0):
        if not 1 <= n <= m:
            raise ConfigError(f"voting needs 1 ≤ N ≤ M (N of the last M frames), got {n} of {m}")
        if not 0.0 <= min_confidence < 1.0:
            raise ConfigError(f"min_confidence must be in [0, 1), got {min_confidence}")
        self.n, self.m, self.min_confidence = n, m, min_confidence
        self.votes: deque[str] = deque(maxlen=m)

    @classmethod
    def parse(cls, text: str, min_confidence: float = 0.0) -> Decider:
        """'3/5' → N=3 of the last M=5 frames."""
        n, _, m = text.partition("/")
        if not (n.strip().isdigit() and m.strip().isdigit()):
            raise ConfigError(f"--vote must look like 3/5 (N of the last M frames), got {text!r}")
        return cls(int(n), int(m), min_confidence)

    @property
    def rule(self) -> str:
        floor = f", confidence ≥ {self.min_confidence:.0%}" if self.min_confidence else ""
        return f"{self.n} of the last {self.m} frames{floor}; unknown votes unknown"

    def update(self, pred) -> Decision:
        """Add this frame's vote; the decision over the last M frames (ties: this frame's vote, then the newest)."""
        vote = UNKNOWN if pred.unknown or pred.confidence < self.min_confidence else pred.label
        self.votes.append(vote)
        counts = Counter(self.votes)
        newest = {label: i for i, label in enumerate(self.votes)}
        leader = max(counts, key=lambda label: (counts[label], label == vote, newest[label]))
        decided = leader if counts[leader] >= self.n else None
        return Decision(decided, counts[leader], len(self.votes), vote)

    def reset(self) -> None:
        """Forget the votes (a new scene: the camera was moved, the robot turned)."""
        self.votes.clear()
