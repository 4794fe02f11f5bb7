"""YADTQ's workers: the task registry, the built-in tasks and the worker loop."""

from worker_pool.context import TaskContext, current_task
from worker_pool.registry import Registry, TaskDef, default_registry, task

__all__ = ["Registry", "TaskContext", "TaskDef", "current_task", "default_registry", "task"]
