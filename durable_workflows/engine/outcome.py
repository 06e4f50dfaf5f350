"""What a primitive's replay or a failed step attempt decided, as one small type.

Suspending is not an outcome: a primitive that must wait unwinds the run with `Suspend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outcome:
    #: "run": do the work now; "return": the recorded value is the answer; "retry": run
    #: another attempt at once.
    action: str
    value: Any = None

    @property
    def returns(self) -> bool:
        return self.action == "return"


RUN = Outcome("run")
RETRY = Outcome("retry")


def returned(value: Any) -> Outcome:
    return Outcome("return", value)
