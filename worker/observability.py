"""What a worker tells operators: its metrics on `WORKER_METRICS_PORT`, and log lines that name
the job, task and request they belong to.

A task message carries its job's request id in a header (`shared.queue.REQUEST_ID_HEADER`).
While a task runs (`task_prerun` to `task_postrun`), its thread's `LogContext` names the request,
the job and the task, so the worker's own lines and Celery's "succeeded" line carry them. Celery
logs "Received task" before any task code runs, from the consumer; `JobRequest`, the task's request
class, remembers each received message's request id so that line carries it too.

The worker runs Celery's thread pool: its tasks run in the process that serves the metrics, so
one port per worker process shows everything it did.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from celery.worker.request import Request
from prometheus_client import start_http_server

from shared import keys
from shared.observability import LogContext, bind, unbind
from shared.queue import REQUEST_ID_HEADER
from shared.settings import Settings

__all__ = ["JobRequest", "MetricsServer", "TaskLines", "task_finished", "task_started"]

log = logging.getLogger(__name__)

#: Request ids of received messages whose task has not run yet (bounded: revoked ones never run).
_received: dict[str, str] = {}
_RECEIVED_LIMIT = 10_000
#: Per pool thread: the context bound by `task_started`, undone by `task_finished` (same thread).
_running = threading.local()


class JobRequest(Request):
    """Celery's request, remembering the message's request id for the log lines before the task."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request_id = self.request_dict.get(REQUEST_ID_HEADER)
        if request_id:
            if len(_received) >= _RECEIVED_LIMIT:
                _received.pop(next(iter(_received)), None)
            _received[self.id] = request_id


class TaskLines(logging.Filter):
    """Celery's own task lines ("Received task", "succeeded in") name the task in `data`; a checklist
    task's id is its job's id. Adds `task_id`, `job_id` and, when known, `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = record.__dict__.get("data")
        if isinstance(data, dict) and isinstance(task_id := data.get("id"), str):
            fields = record.__dict__
            fields.setdefault("task_id", task_id)
            if data.get("name") == keys.TASK_NAME:
                fields.setdefault("job_id", task_id)
            if (request_id := _received.get(task_id)) is not None:
                fields.setdefault("request_id", request_id)
        return True


def task_started(task_id: str, task: Any, args: Any = (), **_: Any) -> None:
    """`task_prerun`: this thread's lines name the task, its job (a checklist task's argument; a
    webhook delivery names it once claimed) and its request from now on."""
    request_id = task.request.get(REQUEST_ID_HEADER) or _received.get(task_id) or None
    job_id = args[0] if task.name == keys.TASK_NAME and args and isinstance(args[0], str) else None
    _running.token = bind(LogContext(request_id=request_id, job_id=job_id, task_id=task_id))


def task_finished(task_id: str, **_: Any) -> None:
    """`task_postrun`, after Celery's own "succeeded" line."""
    _received.pop(task_id, None)
    token = getattr(_running, "token", None)
    if token is not None:
        _running.token = None
        unbind(token)


class MetricsServer:
    """prometheus-client's HTTP server for this process's registry, on `WORKER_METRICS_PORT`."""

    def __init__(self, settings: Settings) -> None:
        self.port = settings.observability.worker_metrics_port
        self.host = settings.observability.worker_metrics_host
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.port == 0:
            return
        try:
            self._server, self._thread = start_http_server(self.port, self.host)
        except OSError as exc:
            # A worker that cannot export its metrics still does its work; Prometheus's `up` for
            # this target says the rest.
            log.error("worker metrics not served on %s:%d: %s", self.host, self.port, exc)  # noqa: TRY400
            return
        log.info("worker metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
