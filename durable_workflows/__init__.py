"""Durable workflows for Django: plain functions whose steps and sleeps survive restarts.

The names below are imported lazily, so that `INSTALLED_APPS` can load this package before
Django's app registry is ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import exports

__version__ = "0.1.0"

_EXPORTS = {
    "workflow": "registry",
    "RetryPolicy": "retry",
    "State": "states",
    "start": "client",
    "get": "client",
    "cancel": "client",
    "pause": "client",
    "resume": "client",
    "fork": "client",
    "start_many": "client",
    "list": "client",
    "meta": "client",
    "run_inline": "client",
    "WorkflowHandle": "client",
    "fire_alarms": "engine",
    "recover": "engine",
    "DurableWorkflowError": "exceptions",
    "WorkflowNotFound": "exceptions",
    "UnknownWorkflow": "exceptions",
    "InvalidTransition": "exceptions",
    "NonDeterminismError": "exceptions",
    "SerializationError": "exceptions",
    "CodecError": "exceptions",
    "StepTimeout": "exceptions",
    "StepScopeError": "exceptions",
    "NonRetryableError": "exceptions",
    "WorkflowCancelled": "exceptions",
    "WorkflowFailed": "exceptions",
    "WorkflowNotFinished": "exceptions",
    "DispatchError": "exceptions",
    "WorkflowIdConflict": "exceptions",
    "ReplayError": "exceptions",
    "EventTimeout": "exceptions",
    "WorkflowTimeout": "exceptions",
    "send_event": "client",
    "ChildWorkflowFailed": "exceptions",
    "ChildHandle": "engine.children",
    "check_replay": "engine.check",
    "purge_expired": "engine",
    "fire_schedules": "engine",
}

__all__ = [
    "ChildHandle", "ChildWorkflowFailed", "CodecError", "DispatchError", "DurableWorkflowError", "EventTimeout", "InvalidTransition", "NonDeterminismError", "NonRetryableError",
    "ReplayError", "RetryPolicy", "SerializationError", "State", "StepScopeError", "StepTimeout",
    "UnknownWorkflow", "WorkflowCancelled", "WorkflowFailed", "WorkflowHandle", "WorkflowIdConflict", "WorkflowNotFinished",
    "WorkflowNotFound", "WorkflowTimeout", "cancel", "check_replay", "client", "fork", "fire_alarms", "fire_schedules", "get", "list",
    "meta", "pause", "purge_expired", "recover", "resume", "run_inline", "send_event", "start", "start_many", "workflow",
]

if TYPE_CHECKING:
    from . import client
    from .client import (
        WorkflowHandle,
        cancel,
        fork,
        get,
        list,
        meta,
        pause,
        resume,
        run_inline,
        send_event,
        start,
        start_many,
    )
    from .engine import fire_alarms, fire_schedules, purge_expired, recover
    from .engine.check import check_replay
    from .engine.children import ChildHandle
    from .exceptions import (
        ChildWorkflowFailed,
        CodecError,
        DispatchError,
        DurableWorkflowError,
        EventTimeout,
        InvalidTransition,
        NonDeterminismError,
        NonRetryableError,
        ReplayError,
        SerializationError,
        StepScopeError,
        StepTimeout,
        UnknownWorkflow,
        WorkflowCancelled,
        WorkflowFailed,
        WorkflowIdConflict,
        WorkflowNotFinished,
        WorkflowNotFound,
        WorkflowTimeout,
    )
    from .registry import workflow
    from .retry import RetryPolicy
    from .states import State


__getattr__ = exports(globals(), _EXPORTS, modules=("client",))
