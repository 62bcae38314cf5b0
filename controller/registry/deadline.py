"""Deadlines passed down every call, so that the webhook answers inside its `timeoutSeconds`.

A `Deadline` is an absolute instant on the monotonic clock. Each registry request gets the smaller
of its own per-request budget and what is left of the total, so one slow request cannot eat the
time of the others and the whole verification never outlives the admission request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute instant, in `time.monotonic()` seconds, after which work is abandoned."""

    at: float
    """The instant, on the monotonic clock."""

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left; never negative."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        """True once the instant has passed."""
        return time.monotonic() >= self.at

    def budget(self, per_request: float) -> float:
        """The time one request may take: its own cap, or what is left of the total."""
        return min(per_request, self.remaining())

    def earlier(self, other: Deadline) -> Deadline:
        """Whichever of the two comes first."""
        return self if self.at <= other.at else other
