"""The Grafana dashboard, written as data: `python -m ops.grafana.dashboard > ops/grafana/dashboards/tripcheck.json`.

Rows: the golden signals, jobs and the queue, Groq, webhooks and streams, security, Redis. A test
checks that the committed JSON is this module's output and that every metric a panel queries is
exported by a running API and worker (or by redis_exporter).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ROWS", "dashboard"]

#: Routes that wait on purpose (long-polls, event streams, the legacy endpoint): left out of latency.
_WAITING = 'route!~".*(wait|events|generate-checklist).*"'


@dataclass(frozen=True)
class Panel:
    title: str
    queries: dict[str, str]  # legend -> PromQL
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""


@dataclass(frozen=True)
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


def _quantiles(metric: str, selector: str = "") -> dict[str, str]:
    inner = f"sum by (le) (rate({metric}_bucket{{{selector}}}[5m]))"
    return {f"p{q}": f"histogram_quantile(0.{q}, {inner})" for q in ("50", "95", "99")}


ROWS = [
    Row(
        "Golden signals",
        [
            Panel("API up", {"api": 'min(up{job="api"})'}, kind="stat"),
            Panel(
                "Requests by status class",
                {"{{status_class}}": "sum by (status_class) (rate(tripcheck_http_requests_total[5m]))"},
                unit="reqps",
            ),
            Panel(
                "5xx ratio",
                {
                    "5xx": 'sum(rate(tripcheck_http_requests_total{status_class="5xx"}[5m]))'
                    " / sum(rate(tripcheck_http_requests_total[5m]))"
                },
                unit="percentunit",
            ),
            Panel(
                "Latency (waiting routes left out)",
                _quantiles("tripcheck_http_request_duration_seconds", _WAITING),
                unit="s",
            ),
            Panel("Requests in flight", {"in flight": "sum(tripcheck_http_requests_in_flight)"}),
        ],
    ),
    Row(
        "Jobs and queue",
        [
            Panel("Live workers", {"workers": "max(tripcheck_workers_alive)"}, kind="stat"),
            Panel("Queue depth", {"{{queue}}": "max by (queue) (tripcheck_queue_depth)"}),
            Panel(
                "Oldest waiting message",
                {"{{queue}}": "max by (queue) (tripcheck_queue_oldest_message_age_seconds)"},
                unit="s",
            ),
            Panel("Jobs submitted", {"{{api}}": "sum by (api) (rate(tripcheck_jobs_submitted_total[5m]))"}, unit="ops"),
            Panel(
                "Jobs finished", {"{{status}}": "sum by (status) (rate(tripcheck_jobs_finished_total[5m]))"}, unit="ops"
            ),
            Panel(
                "Failed jobs by error",
                {"{{error_code}}": 'sum by (error_code) (rate(tripcheck_jobs_finished_total{status="failed"}[15m]))'},
                unit="ops",
            ),
            Panel("Queue wait (created → started)", _quantiles("tripcheck_job_queue_wait_seconds"), unit="s"),
            Panel("End to end (created → final)", _quantiles("tripcheck_job_duration_seconds"), unit="s"),
            Panel(
                "Attempts per job (p95)",
                {"p95": "histogram_quantile(0.95, sum by (le) (rate(tripcheck_job_attempts_bucket[15m])))"},
            ),
            Panel(
                "Recovery sweep",
                {"{{action}}": "sum by (action) (rate(tripcheck_recovery_actions_total[5m]))"},
                unit="ops",
                description="recovered: jobs whose worker died, queued again; pushed: lost or due messages sent.",
            ),
        ],
    ),
    Row(
        "Groq",
        [
            Panel(
                "Calls by outcome",
                {"{{outcome}} {{status}}": "sum by (outcome, status) (rate(tripcheck_groq_requests_total[5m]))"},
                unit="ops",
            ),
            Panel("Call latency", _quantiles("tripcheck_groq_request_duration_seconds"), unit="s"),
            Panel("Tokens per minute", {"{{kind}}": "sum by (kind) (rate(tripcheck_groq_tokens_total[5m])) * 60"}),
            Panel(
                "Retries, budget waits, offline fallbacks",
                {
                    "retry {{reason}}": "sum by (reason) (rate(tripcheck_groq_retries_total[5m]))",
                    "budget waits": "sum(rate(tripcheck_groq_budget_waits_total[5m]))",
                    "offline fallbacks": "sum(rate(tripcheck_offline_fallbacks_total[5m]))",
                },
                unit="ops",
            ),
        ],
    ),
    Row(
        "Webhooks and streams",
        [
            Panel(
                "Webhook deliveries",
                {"{{outcome}}": "sum by (outcome) (rate(tripcheck_webhook_deliveries_total[5m]))"},
                unit="ops",
            ),
            Panel("Delivery latency", _quantiles("tripcheck_webhook_delivery_duration_seconds"), unit="s"),
            Panel("Open event streams", {"streams": "sum(tripcheck_sse_streams_open)"}),
        ],
    ),
    Row(
        "Security",
        [
            Panel(
                "Authentication failures",
                {"{{reason}}": "sum by (reason) (rate(tripcheck_auth_failures_total[5m]))"},
                unit="ops",
            ),
            Panel(
                "Refused by quotas",
                {"{{quota}}": "sum by (quota) (rate(tripcheck_rate_limited_total[5m]))"},
                unit="ops",
            ),
            Panel(
                "Limiter unavailable, bodies too large",
                {
                    "limiter errors": "sum(rate(tripcheck_rate_limiter_errors_total[5m]))",
                    "bodies too large": "sum(rate(tripcheck_request_body_too_large_total[5m]))",
                },
                unit="ops",
            ),
        ],
    ),
    Row(
        "Redis",
        [
            Panel("Redis up", {"redis": "min(redis_up)"}, kind="stat"),
            Panel(
                "Memory used / maxmemory",
                {"used": "redis_memory_used_bytes / (redis_memory_max_bytes > 0)"},
                unit="percentunit",
            ),
            Panel(
                "Redis errors seen by the service",
                {"{{process}} {{kind}}": "sum by (process, kind) (rate(tripcheck_redis_errors_total[5m]))"},
                unit="ops",
            ),
            Panel("Clients", {"clients": "sum(redis_connected_clients)"}),
        ],
    ),
]


def _panel(panel: Panel, ident: int, x: int, y: int) -> dict[str, Any]:
    width = 6 if panel.kind == "stat" else 12
    return {
        "id": ident,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
            for n, (legend, expr) in enumerate(panel.queries.items())
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    ident, y = 1, 0
    for row in ROWS:
        grid = {"h": 1, "w": 24, "x": 0, "y": y}
        panels.append({"id": ident, "type": "row", "title": row.title, "collapsed": False, "gridPos": grid})
        ident, y, x = ident + 1, y + 1, 0
        for panel in row.panels:
            width = 6 if panel.kind == "stat" else 12
            if x + width > 24:
                x, y = 0, y + 8
            panels.append(_panel(panel, ident, x, y))
            ident, x = ident + 1, x + width
        y += 8
    return {
        "uid": "trip-checklist",
        "title": "Trip Checklist",
        "tags": ["trip-checklist"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }


def main() -> None:
    json.dump(dashboard(), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
