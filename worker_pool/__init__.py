"""YADTQ's workers: the task registry, the built-in tasks and the worker loop."""

from worker_pool.registry import Registry, TaskDef, default_registry, task

__all__ = ["Registry", "TaskDef", "default_registry", "task"]
