"""Workflow declarations."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import to_jsonable_python

from bastion.errors import FieldError, ValidationFailed
from bastion.jobs import Retry


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
    arguments: type[BaseModel]
    queue: str
    step_retry: Retry
    recovery_s: float

    def dump_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        try:
            model = self.arguments.model_validate(dict(args))
        except ValidationError as error:
            raise ValidationFailed(
                detail=f"invalid arguments for workflow {self.name}",
                errors=[
                    FieldError(".".join(str(p) for p in e["loc"]) or "args", e["type"], e["msg"])
                    for e in error.errors()
                ],
            ) from None
        dumped: dict[str, Any] = to_jsonable_python(model.model_dump(mode="json"))
        return dumped

    def load_args(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        model = self.arguments.model_validate(dict(stored))
        return {name: getattr(model, name) for name in type(model).model_fields}


def declare_workflow(
    fn: Callable[..., Any], *, name: str | None, queue: str, step_retry: Retry, recovery_s: float
) -> WorkflowSpec:
    label = f"workflow {fn.__qualname__}"
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{label} must be 'async def': its steps are awaited")
    hints = typing.get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise TypeError(f"{label} must take the workflow run (wf) as its first parameter")
    fields: dict[str, Any] = {}
    for param in params[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{label}: *args and **kwargs cannot be stored; name each argument")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    workflow_name = name or fn.__name__
    arguments = create_model(
        f"{workflow_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return WorkflowSpec(workflow_name, fn, arguments, queue, step_retry, recovery_s)
