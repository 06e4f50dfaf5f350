"""The first path of the django-q2 dispatcher and task functions, which live in
`durable_workflows.djangoq` now.

It stays: settings name `durable_workflows.tasks.DjangoQDispatcher`, and the broker's tasks
and the Schedule rows name their functions by this path (`RUN_INSTANCE`), those queued by an
older release as well as the new ones.
"""

from .djangoq.dispatcher import RUN_INSTANCE, TASK_NAME_LENGTH, DjangoQDispatcher, queue_broker
from .djangoq.runs import (
           CLAIM_RETRY_PAUSE,
           fire_alarms_task,
           recover_task,
           release_leases,
           run_instance,
)

__all__ = ["CLAIM_RETRY_PAUSE", "RUN_INSTANCE", "TASK_NAME_LENGTH", "DjangoQDispatcher", "fire_alarms_task",
           "queue_broker", "recover_task", "release_leases", "run_instance"]
