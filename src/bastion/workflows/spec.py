"""Workflow declarations."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bastion.jobs import Retry
from bastion.jobs.arguments import StoredArguments


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """A declared workflow.

    Attributes:
        step_retry: The retry policy of action steps that give none.
        recovery_s: An unfinished run untouched this long is resumed by a worker
            (after a crash of the process that ran it inline).
    """

    name: str
    fn: Callable[..., Any]
    arguments: StoredArguments
    queue: str
    step_retry: Retry
    recovery_s: float


def declare_workflow(
    fn: Callable[..., Any], *, name: str | None, queue: str, step_retry: Retry, recovery_s: float
) -> WorkflowSpec:
    label = f"workflow {fn.__qualname__}"
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{label} must be 'async def': its steps are awaited")
    workflow_name = name or fn.__name__
    arguments = StoredArguments.of(fn, f"workflow {workflow_name}", "the workflow run (wf)")
    return WorkflowSpec(workflow_name, fn, arguments, queue, step_retry, recovery_s)
