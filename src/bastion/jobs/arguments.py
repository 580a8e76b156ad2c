"""Arguments that outlive the call: validated when a job or workflow is created, stored as
JSON, and typed again when it runs (in another process, maybe after a deploy)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import to_jsonable_python

from bastion.errors import FieldError, ValidationFailed


@dataclass(frozen=True, slots=True)
class StoredArguments:
    """The parameters of a function after its first (``ctx`` or ``wf``)."""

    label: str
    model: type[BaseModel]

    @classmethod
    def of(cls, fn: Callable[..., Any], label: str, first: str) -> StoredArguments:
        """Describe ``fn``'s parameters; raises TypeError for shapes that cannot be stored."""
        hints = typing.get_type_hints(fn, include_extras=True)
        params = list(inspect.signature(fn).parameters.values())
        if not params:
            raise TypeError(f"{label} must take {first} as its first parameter")
        fields: dict[str, Any] = {}
        for param in params[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"{label}: *args and **kwargs cannot be stored; name each argument")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (hints.get(param.name, Any), default)
        name = label.replace(" ", "_").replace(".", "_")
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        return cls(label, model)

    @property
    def names(self) -> list[str]:
        return list(self.model.model_fields)

    def dump(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and turn into JSON; 422 ``validation_failed`` naming each bad field."""
        try:
            validated = self.model.model_validate(dict(args))
        except ValidationError as error:
            raise ValidationFailed(
                detail=f"invalid arguments for {self.label}",
                errors=[
                    FieldError(".".join(str(p) for p in e["loc"]) or "args", e["type"], e["msg"])
                    for e in error.errors()
                ],
            ) from None
        dumped: dict[str, Any] = to_jsonable_python(validated.model_dump(mode="json"))
        return dumped

    def load(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The typed arguments again (dates back to dates, models to models)."""
        validated = self.model.model_validate(dict(stored))
        return {name: getattr(validated, name) for name in self.names}
