"""The one error tree of YADTQ: every error it raises on purpose is a YadtqError."""

from __future__ import annotations


class YadtqError(Exception):
    """Base class of every error YADTQ raises on purpose."""


class ConfigError(YadtqError):
    """The cluster file (yadtq.yaml) is missing, unreadable or has a wrong key."""


class InvalidMessage(YadtqError):
    """A message on a topic is not a valid YADTQ message.

    ``task_id`` is set when the message was readable enough to name its task, so
    that the task's record can say ``failed`` with this error; ``task_name``
    when it named a task (registered or not), for that record's ``task``.
    """

    def __init__(self, reason: str, task_id: str | None = None, task_name: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id
        self.task_name = task_name


class UnknownTask(InvalidMessage):
    """The message names a task that no loaded module registered."""


class ServiceUnavailable(YadtqError):
    """Kafka or Redis does not answer at the configured address."""


class TaskError(YadtqError):
    """Base of the errors about one task's outcome."""


class TaskFailed(TaskError):
    """The task ended ``failed``; ``error`` holds the reason stored in its record."""

    def __init__(self, task_id: str, error: str, traceback: str = "") -> None:
        super().__init__(f"task {task_id} failed: {error}")
        self.task_id = task_id
        self.error = error
        self.traceback = traceback


class TaskNotFound(TaskError):
    """Redis holds no record of this task id (never submitted, or expired)."""


class TaskCancelled(TaskError):
    """The task ended ``cancelled`` by an operator; ``by`` and ``at`` say who and when."""

    def __init__(self, task_id: str, by: str, at: str) -> None:
        super().__init__(f"task {task_id} was cancelled by {by}")
        self.task_id = task_id
        self.by = by
        self.at = at


class ResultTimeout(TaskError):
    """Waiting for a task's result took longer than the caller allowed."""


class TaskTimeLimitExceeded(YadtqError):
    """Raised inside a running task when it passes its time limit."""


class TaskStopped(YadtqError):
    """Raised inside a running task that must stop: an operator cancelled it, or it was moved
    to another worker. Like TaskTimeLimitExceeded, a task should let it pass (clean up in
    ``finally``); one that swallows it has its worker process ended a few seconds later."""


class InvalidResult(YadtqError):
    """A task's return value cannot be stored: not JSON, not UTF-8, too deep or too large."""


class Fenced(YadtqError):
    """A write was refused because the writer's epoch is older than the cluster's:
    this process belongs to an old generation and must exit (EXIT_FENCED)."""


class ClusterOwned(YadtqError):
    """Another supervisor holds this cluster's lease (same topics and key prefix)."""


class LeaseLost(YadtqError):
    """This supervisor's lease was taken by another: its cluster must stop at once."""


class ForeignData(YadtqError):
    """One of YADTQ's own Redis keys holds a type YADTQ never writes there: another
    program or a person wrote it, and the cluster does not start on it."""
