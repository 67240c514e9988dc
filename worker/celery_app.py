"""The worker's Celery application: `celery -A worker.celery_app worker`.

Importing this module reads and validates settings and configures logging, but connects to
nothing; per-process resources are built when the worker process starts and closed when it stops.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from shared.observability import configure_logging
from shared.queue import create_celery
from shared.settings import get_settings
from worker import observability, runtime

__all__ = ["app"]

settings = get_settings()
# Before Celery starts, so that its first words (a warning about running as root, say) are lines
# in LOG_FORMAT too.
configure_logging(settings, [observability.TaskLines()])
app = create_celery(settings)
app.conf.update(
    include=["worker.tasks", "worker.webhooks.tasks"],
    # LLM calls are I/O-bound: threads give many concurrent calls per process at little memory
    # (see README "Choosing the pool" for the measurement). Operators scale with more processes.
    worker_pool="threads",
    worker_concurrency=settings.worker.concurrency,
)


@signals.setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Celery's own lines and ours, in LOG_FORMAT (Celery installs no handler of its own then)."""
    configure_logging(settings, [observability.TaskLines()])


signals.task_prerun.connect(observability.task_started)
signals.task_postrun.connect(observability.task_finished)


@signals.task_revoked.connect
def _revoked(request: Any = None, **_: Any) -> None:
    """An operator revoked the task (Flower, `celery control revoke`): its job is canceled, or it
    would stay queued while the recovery sweep sent it new messages for workers to drop."""
    job_id = getattr(request, "id", None)
    if isinstance(job_id, str):
        runtime.current().processor.cancel(job_id, reason="its task was revoked")


@signals.worker_process_init.connect
def _start_child(**_: Any) -> None:
    """Prefork children: each builds its own clients (sockets must not cross a fork)."""
    runtime.start(settings)


@signals.worker_ready.connect
def _start_main(sender: Any = None, **_: Any) -> None:
    """The main process: the heartbeat, and the resources the thread pool's tasks share."""
    runtime.start_heartbeat(settings, hostname=str(getattr(sender, "hostname", "worker")))


@signals.worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    """Warm shutdown begins: running tasks finish, but a write waiting for Redis gives up soon."""
    runtime.begin_shutdown()


@signals.worker_shutdown.connect
@signals.worker_process_shutdown.connect
def _stop(**_: Any) -> None:
    runtime.stop()
