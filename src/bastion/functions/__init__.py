"""Functions: declarations (queries, mutations, actions) and the one path that runs them."""

from __future__ import annotations

from bastion.functions.invoke import Invoker, authorize, database_error
from bastion.functions.registry import FunctionKind, FunctionSpec, declare

__all__ = ["FunctionKind", "FunctionSpec", "Invoker", "authorize", "database_error", "declare"]
