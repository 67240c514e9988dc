"""The Celery application object, its configuration, and the message the API enqueues.

The API does not publish through kombu: submitting a job is one Redis script that stores the job
*and* pushes its task message (see `shared.jobs`), so a job can never exist without its message
and the submit path costs one round trip. `TaskEnvelopes` builds that message with Celery's own
protocol-2 code and kombu's Redis envelope layout, exactly what `apply_async` would push onto the
queue list; a test compares the two so that an upgrade that changes the format fails loudly.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from celery import Celery
from kombu import Exchange, Queue

from shared import broker, keys
from shared.redis_url import RedisEndpoint
from shared.settings import Settings

__all__ = ["REQUEST_ID_HEADER", "TaskEnvelopes", "TaskMessage", "create_celery"]


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured for the checklist queue; connects lazily, on first use."""
    broker.install()  # kombu's Redis transport without the restores that crash workers
    # kombu reads REDIS_URL differently from redis-py (see shared.redis_url): it gets the URL
    # without options, and the TLS options and timeouts the way it hands them to redis-py as is.
    redis = RedisEndpoint.parse(settings.redis_url)
    timeouts = {"socket_timeout": redis.socket_timeout, "socket_connect_timeout": redis.socket_connect_timeout}
    app = Celery("trip_checklist", broker=redis.without_options(), set_as_current=False)
    app.conf.update(
        # The anonymous exchange routes by queue name alone, so neither the API's pushes nor a
        # task's retries depend on exchange bindings stored in Redis.
        task_queues=[
            Queue(keys.QUEUE, Exchange(""), routing_key=keys.QUEUE),
            Queue(keys.WEBHOOK_QUEUE, Exchange(""), routing_key=keys.WEBHOOK_QUEUE),
        ],
        task_default_queue=keys.QUEUE,
        task_routes={keys.TASK_NAME: {"queue": keys.QUEUE}, keys.WEBHOOK_TASK_NAME: {"queue": keys.WEBHOOK_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        # A crashed worker must not lose its job: acknowledge only after the task ran, and give
        # the message back if the worker process dies. Tasks are idempotent, so redelivery is safe.
        # Retries are not Celery retries: the job store schedules them (a countdown in Redis, see
        # `shared.jobs`), so no worker holds a message while it waits.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={name: value for name, value in timeouts.items() if value is not None},
        # Redis may be away for any length of time: keep reconnecting, never give up and exit.
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_send_task_events=True,  # Flower's task view
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    if redis.tls:
        # Always a non-empty dict: given none, kombu would skip checking the server's certificate
        # (ssl_cert_reqs=none), where redis-py, and so the link, require a valid one by default.
        app.conf.broker_use_ssl = {"ssl_cert_reqs": "required", **redis.tls_options}
    return app


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One task message as pushed onto the queue, and its delivery tag (kombu's key for it)."""

    tag: str
    body: bytes


#: The task message header carrying the request id of the job's submission (`shared.observability`);
#: the worker binds it to its log lines (Celery hands custom headers to the task as `request.<name>`).
REQUEST_ID_HEADER = "request_id"


class TaskEnvelopes:
    """Builds the JSON that `apply_async(args=(job_id,), task_id=job_id, headers={"request_id": rid})`
    would LPUSH onto the queue (the checklist task by default; `task_name` and `queue` name another,
    such as webhook delivery).

    Celery's `create_task_message` runs once, with placeholders; per job only the id, the delivery
    tag, the request id and the (tiny) body change, so a submission costs a few string
    replacements (~2 µs) instead of Celery's message building (~20 µs), on every request. The same
    job id, tag and request id always give the same bytes, which is how the recovery sweep finds a
    message on the queue. Request ids are safe characters only (`shared.observability`), so they
    go into the JSON as they are.
    """

    _ID = "@@job-id@@"
    _TAG = "@@delivery-tag@@"
    _BODY = "@@body@@"
    _REQUEST_ID = "@@request-id@@"

    def __init__(self, app: Celery, task_name: str = keys.TASK_NAME, queue: str = keys.QUEUE) -> None:
        headers, properties, body, _sent_event = app.amqp.create_task_message(
            self._ID, task_name, (self._ID,), {}, ignore_result=None
        )
        headers[REQUEST_ID_HEADER] = self._REQUEST_ID  # as send_task_message merges `headers=`
        envelope: dict[str, Any] = {
            "body": self._BODY,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": self._TAG,
            },
        }
        self._template = msgspec.json.encode(envelope).decode()
        self._body_template = msgspec.json.encode(body).decode()

    def build(self, job_id: str, tag: str | None = None, *, request_id: str = "") -> TaskMessage:
        """The job's task message; by default its first one, whose tag is derived from the job id."""
        # A delivery tag only has to be unique per message: the job's own (random, 128-bit) id in
        # UUID form is, and saves a uuid4() per submission. Later messages get fresh tags.
        tag = tag or f"{job_id[:8]}-{job_id[8:12]}-{job_id[12:16]}-{job_id[16:20]}-{job_id[20:32]}"
        body = base64.b64encode(self._body_template.replace(self._ID, job_id).encode()).decode("ascii")
        data = self._template.replace(self._BODY, body).replace(self._TAG, tag).replace(self._ID, job_id)
        # Last: nothing replaces anything inside the client's request id.
        return TaskMessage(tag=tag, body=data.replace(self._REQUEST_ID, request_id).encode())

    def build_another(self, job_id: str, *, request_id: str = "") -> TaskMessage:
        """A further message for the job (a retry, or a replacement for a lost one)."""
        return self.build(job_id, str(uuid.uuid4()), request_id=request_id)
