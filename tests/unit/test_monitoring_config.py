"""The monitoring configuration in ops/ is valid, behaves as intended, and names real metrics.

promtool (Debian's `prometheus` package) and amtool (`prometheus-alertmanager`) check the files;
`tests/system-packages.sh` installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from ops.grafana.dashboard import dashboard
from shared import metrics
from tests.monitoring import DASHBOARD, ROOT, metric_names

PROMETHEUS = ROOT / "ops" / "prometheus"
ALERTMANAGER = ROOT / "ops" / "alertmanager"


def run(*command: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_the_alert_rules_pass_promtool() -> None:
    assert "SUCCESS" in run("promtool", "check", "rules", str(PROMETHEUS / "rules.yml"))


def test_the_alert_rules_fire_and_stay_quiet_as_their_unit_tests_say() -> None:
    assert "SUCCESS" in run("promtool", "test", "rules", str(PROMETHEUS / "rules.test.yml"))


def test_the_prometheus_configuration_passes_promtool(tmp_path: Path) -> None:
    # The secrets it reads are mounted beside it in production; stand-ins are enough to check it.
    config = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, config)
    (config / "secrets").mkdir()
    for name in ("metrics_token", "flower_password"):
        (config / "secrets" / name).write_text("stand-in\n")

    assert "SUCCESS" in run("promtool", "check", "config", str(config / "prometheus.yml"))


def test_alertmanager_gets_its_receiver_from_the_environment_and_passes_amtool(tmp_path: Path) -> None:
    url = "https://hooks.example.test/alerts?team=ops&x=a|b"
    rendered = tmp_path / "alertmanager.yml"
    env = {**os.environ, "ALERTMANAGER_WEBHOOK_URL": url}

    run("sh", str(ALERTMANAGER / "render.sh"), str(ALERTMANAGER / "alertmanager.yml.tmpl"), str(rendered), env=env)

    assert f'url: "{url}"' in rendered.read_text()
    assert "SUCCESS" in run("amtool", "check-config", str(rendered))
    template = (ALERTMANAGER / "alertmanager.yml.tmpl").read_text()
    assert "http" not in template.split("receivers:", 1)[1]  # no target written in the file


def test_alertmanager_refuses_to_start_without_a_receiver(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "ALERTMANAGER_WEBHOOK_URL"}
    result = subprocess.run(
        ["sh", str(ALERTMANAGER / "render.sh"), str(ALERTMANAGER / "alertmanager.yml.tmpl"), str(tmp_path / "a.yml")],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )

    assert result.returncode != 0
    assert "ALERTMANAGER_WEBHOOK_URL" in result.stderr


def test_the_committed_dashboard_is_what_its_generator_writes() -> None:
    assert json.loads(DASHBOARD.read_text()) == dashboard(), "run: python -m ops.grafana.dashboard > " + str(DASHBOARD)


def test_every_service_metric_the_rules_and_dashboard_use_is_defined() -> None:
    # prometheus-client keeps a counter's name without `_total`, which it adds when exporting.
    defined = {
        f"{collector._name}_total" if collector._type == "counter" else collector._name
        for collector in vars(metrics).values()
        if isinstance(collector, Counter | Gauge | Histogram)
    } | set(metrics.SCRAPE_TIME_GAUGES)
    used = {name for name in metric_names() if name.startswith("tripcheck_")}

    assert used <= defined, sorted(used - defined)
