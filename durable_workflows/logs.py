"""Every log record of the library says which instance, workflow and position it is about.

`instance_id`, `workflow` and `position` are set on each record of the library's loggers
(None when a record is about none, as the ticker's own). A call that names an instance gives
them itself (`extra=about(...)`); otherwise they come from the run and the step attempt in
progress in that thread. A format such as `"%(levelname)s %(instance_id)s %(message)s"` or a
JSON formatter can then show them.
"""

from __future__ import annotations

import logging
from typing import Any

from .engine import observe

LOGGERS = ("durable_workflows", "durable_workflows.ticker", "durable_workflows.engine.heartbeat")


class RunContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        attempt = observe.CURRENT_ATTEMPT.get()
        current: Any = attempt or observe.CURRENT_RUN.get()
        if not hasattr(record, "instance_id"):
            record.instance_id = current.instance_id if current is not None else None
        if not hasattr(record, "workflow"):
            record.workflow = current.workflow if current is not None else None
        if not hasattr(record, "position"):
            record.position = attempt.position if attempt is not None else None
        return True


FILTER = RunContextFilter()


def install() -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if FILTER not in logger.filters:
            logger.addFilter(FILTER)
