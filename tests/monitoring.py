"""What the monitoring configuration in ops/ refers to: the metric names its alert rules and
dashboard query, so that tests can check each one is really exported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "ops" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "tripcheck.json"

_NAME = re.compile(r"\b((?:tripcheck|redis)_[a-z0-9_]+|up)\b(?!\s*\()")
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def _names(expression: str) -> set[str]:
    names = set()
    for found in _NAME.findall(expression):
        name = found
        for suffix in _HISTOGRAM_PARTS:
            if name.startswith("tripcheck_") and name.endswith(suffix):
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def metric_names() -> set[str]:
    """Every metric the rules and the dashboard use (histograms by their base name)."""
    return set().union(*(_names(expression) for expression in rule_expressions() + dashboard_expressions()))
