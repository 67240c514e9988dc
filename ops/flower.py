"""`python -m ops.flower` (`make flower`, `make run FLOWER=1`): Flower, the Celery monitoring UI.

Flower lists the workers and every task they received, with its state, runtime, worker and
result, from the task events the workers send (`worker_send_task_events`; Flower also asks workers
to turn events on, `enable_events`). It always asks for credentials:

- `FLOWER_BASIC_AUTH` (`user:password`, comma-separated for several: people, and `prometheus`
  for the scrape), or Flower's OAuth options (`FLOWER_AUTH`, `FLOWER_AUTH_PROVIDER`,
  `FLOWER_OAUTH2_KEY`, ...), read by Flower itself;
- without either, it refuses to start in production, and elsewhere makes a password for `admin`
  and prints it.

Flower 2.2 serves its own `/metrics` without asking (tornado's `authenticated` guards its pages
and API, not that handler); here the same guard is put on it, in this one place, and
tests/integration/test_flower.py fails if Flower's handler changes. Flower is served under
`/flower` (`FLOWER_URL_PREFIX`), which ops/prometheus/prometheus.yml scrapes, on `FLOWER_ADDRESS`
(127.0.0.1) and `FLOWER_PORT` (5555). Its log lines are in LOG_FORMAT, like everything else.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Mapping, MutableMapping

from shared.errors import SettingsError
from shared.settings import load_settings

__all__ = ["DEFAULTS", "authentication", "main", "new_credentials"]

#: Where Flower listens unless FLOWER_ADDRESS, FLOWER_PORT or FLOWER_URL_PREFIX say otherwise.
DEFAULTS = {"FLOWER_ADDRESS": "127.0.0.1", "FLOWER_PORT": "5555", "FLOWER_URL_PREFIX": "flower"}
#: Flower's debug lines print its settings, OAuth secret included.
_QUIET_LOGGERS = ("flower", "tornado")


def authentication(env: Mapping[str, str]) -> str | None:
    """How Flower will authenticate (`basic` or `oauth`), or None when it would be open."""
    if env.get("FLOWER_BASIC_AUTH", "").strip():
        return "basic"
    if env.get("FLOWER_AUTH", "").strip() and env.get("FLOWER_AUTH_PROVIDER", "").strip():
        return "oauth"
    return None


def new_credentials() -> str:
    """`admin:<random password>`, as FLOWER_BASIC_AUTH takes it."""
    return f"admin:{secrets.token_urlsafe(18)}"


def _guard_metrics() -> None:
    from flower.views import monitor  # noqa: PLC0415 - Flower is imported only to be run
    from tornado import web  # noqa: PLC0415

    monitor.Metrics.get = web.authenticated(monitor.Metrics.get)


def _prepare(env: MutableMapping[str, str]) -> str | None:
    """Fill in defaults and credentials; an error message when Flower must not start."""
    for name, value in DEFAULTS.items():
        env.setdefault(name, value)
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        return str(exc)
    if authentication(env) is not None:
        return None
    if settings.app.environment == "production":
        return (
            "Flower refuses to start without authentication in production: set FLOWER_BASIC_AUTH "
            "(user:password[,user:password]) or Flower's OAuth options (FLOWER_AUTH, FLOWER_AUTH_PROVIDER, ...)"
        )
    credentials = new_credentials()
    env["FLOWER_BASIC_AUTH"] = credentials
    user, password = credentials.split(":", 1)
    print(f"Flower: no FLOWER_BASIC_AUTH set; sign in as {user} with password {password}", flush=True)
    return None


def main(argv: list[str] | None = None) -> int:
    # Flower serves its own process's metrics; the API's multiprocess directory is not for it.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    problem = _prepare(os.environ)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    _guard_metrics()
    level = max(logging.getLevelName(load_settings(os.environ).app.log_level), logging.INFO)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(level)
    from celery.bin.celery import main as celery  # noqa: PLC0415

    sys.argv = ["celery", "-A", "worker.celery_app", "flower", *(argv if argv is not None else sys.argv[1:])]
    return int(celery() or 0)


if __name__ == "__main__":
    sys.exit(main())
