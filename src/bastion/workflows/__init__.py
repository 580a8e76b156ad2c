"""Durable workflows: steps checkpointed in the app's database, resumed after crashes,
compensated in reverse on failure (decision 0006; DBOS's semantics)."""

from __future__ import annotations

from bastion.workflows.engine import StepFailed, WorkflowDiverged, WorkflowRun
from bastion.workflows.handle import Workflow
from bastion.workflows.service import Timeline, Workflows
from bastion.workflows.spec import WorkflowSpec, declare_workflow
from bastion.workflows.tables import StepRow, WorkflowRow

__all__ = [
    "StepFailed",
    "StepRow",
    "Timeline",
    "Workflow",
    "WorkflowDiverged",
    "WorkflowRow",
    "WorkflowRun",
    "WorkflowSpec",
    "Workflows",
    "declare_workflow",
]
