"""The Celery worker: tasks, providers, retries, leases, recovery.

A worker process serves its own metrics (`worker.observability`; the thread pool runs every task
in it). PROMETHEUS_MULTIPROC_DIR is the API's (`api.serve`): in a worker, prometheus-client would
write its samples to files instead (the `celery` command imports it, through Flower's plugin, before
this package loads), so a worker refuses to start with it rather than fail obscurely later.
"""

import os

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    raise RuntimeError(
        "PROMETHEUS_MULTIPROC_DIR is set: it is the API's (python -m api.serve); unset it for workers, "
        "which serve their own metrics on WORKER_METRICS_PORT"
    )
