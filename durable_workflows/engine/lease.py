"""A run's claim on its instance: the fence its writes carry, when it last renewed it, and
what the heartbeat learnt about it since."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..conf import settings
from ..exceptions import LeaseLost
from .fence import Fence

if TYPE_CHECKING:
    from .store import Store


@dataclass(eq=False)
class Lease:
    instance_id: str
    epoch: int
    owner: str
    fence: Fence = field(init=False)
    renewed_at: float = field(default_factory=time.monotonic)
    # Written by the heartbeat thread, read by the run before each step attempt.
    lost: bool = False
    cancel_requested: bool = False
    #: Set by the run itself when a checkpoint found the instance held (checkpoint.py).
    held: bool = False
    #: The store the run writes to, which its heartbeat renews it in (another thread).
    store: Store = field(kw_only=True)

    def __post_init__(self) -> None:
        self.fence = Fence(self.instance_id, self.epoch)

    @staticmethod
    def until(now: datetime) -> datetime:
        return now + timedelta(seconds=settings.LEASE_SECONDS)

    def renewal_due(self) -> bool:
        """Whether the next write should extend the lease: most steps are far quicker than
        a heartbeat, and a checkpoint that leaves the instance row alone is cheaper."""
        return time.monotonic() - self.renewed_at >= settings.HEARTBEAT_SECONDS / 2

    def renewed(self) -> None:
        self.renewed_at = time.monotonic()

    def check(self) -> None:
        """Refuse to start more work once the heartbeat saw the run lose its claim or a
        cancel requested, or a checkpoint found the instance held: the next write would be
        refused anyway, after the work ran."""
        if self.lost or self.cancel_requested or self.held:
            raise LeaseLost()

    def release(self) -> None:
        """Give the lease up at once, so recovery need not wait for it to expire."""
        self.store.release(self)
