"""Settings parsing and start-up validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import DEFAULT_GROQ_MODEL, load_settings

GOOD_PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "s" * 40,
    "GROQ_API_KEY": "key",
    "REDIS_URL": "redis://redis:6379/0",
    "ALLOWED_ORIGINS": "https://app.example.com",
    "METRICS_TOKEN": "m" * 32,
}


def test_defaults_need_no_environment_at_all() -> None:
    settings = load_settings({})

    assert settings.app.environment == "development"
    assert settings.groq.model == DEFAULT_GROQ_MODEL
    assert settings.jobs.ttl == 7 * 24 * 3600
    assert settings.worker.max_attempts == 5
    assert settings.worker.backoff_base == 2.0
    assert settings.worker.backoff_cap == 60.0
    assert settings.api.max_body_bytes == 64 * 1024
    assert settings.api.legacy_wait == 25.0
    assert not settings.use_groq


def test_a_groq_key_selects_groq() -> None:
    assert load_settings({"GROQ_API_KEY": "k"}).use_groq
    assert not load_settings({"GROQ_API_KEY": "k", "LLM_PROVIDER": "offline"}).use_groq


def test_values_are_parsed_by_type() -> None:
    settings = load_settings(
        {
            "DEBUG": "yes",
            "WORKERS": "4",
            "ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "LOG_LEVEL": "debug",
        }
    )

    assert settings.app.debug is True
    assert settings.api.workers == 4
    assert settings.api.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.app.log_level == "DEBUG"


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"WORKERS": "many", "DEBUG": "perhaps", "JOB_TTL": "5", "ENVIRONMENT": "staging"})

    problems = caught.value.problems
    assert len(problems) == 4
    assert any("WORKERS" in p for p in problems)
    assert any("DEBUG" in p for p in problems)
    assert any("JOB_TTL" in p for p in problems)
    assert any("ENVIRONMENT" in p for p in problems)


def test_visibility_timeout_must_exceed_the_longest_time_a_worker_holds_a_message() -> None:
    # An attempt holds its message for a Groq call and a repair call, plus a lease of slack.
    with pytest.raises(SettingsError, match=r"VISIBILITY_TIMEOUT must be above .* \(75s\)"):
        load_settings({"VISIBILITY_TIMEOUT": "75", "GROQ_TIMEOUT": "30", "WORKER_HEARTBEAT_INTERVAL": "5"})
    load_settings({"VISIBILITY_TIMEOUT": "76", "GROQ_TIMEOUT": "30", "WORKER_HEARTBEAT_INTERVAL": "5"})


def test_retries_and_budget_waits_no_longer_bound_the_visibility_timeout() -> None:
    # Both wait in Redis (the job store's countdown), not as a message held by a worker.
    settings = load_settings({"VISIBILITY_TIMEOUT": "120", "LLM_BACKOFF_CAP": "300", "GROQ_BUDGET_WINDOW": "600"})
    assert settings.worker.visibility_timeout == 120


def test_the_lease_and_sweep_interval_follow_the_heartbeat() -> None:
    settings = load_settings({"WORKER_HEARTBEAT_INTERVAL": "4"})
    assert settings.worker.lease == 12
    assert settings.worker.sweep_interval == 1.0
    assert load_settings({"WORKER_HEARTBEAT_INTERVAL": "0.5"}).worker.sweep_interval == 0.25


def test_a_good_production_configuration_loads() -> None:
    settings = load_settings(GOOD_PRODUCTION)

    assert settings.app.environment == "production"
    assert settings.api.docs_enabled is False
    assert settings.observability.log_format == "json"


def test_logs_are_readable_lines_outside_production_unless_asked() -> None:
    assert load_settings({}).observability.log_format == "console"
    assert load_settings({"LOG_FORMAT": "JSON"}).observability.log_format == "json"


def test_production_needs_a_metrics_token() -> None:
    for token in ("", "short"):
        with pytest.raises(SettingsError, match="METRICS_TOKEN"):
            load_settings(GOOD_PRODUCTION | {"METRICS_TOKEN": token})


def test_production_refuses_unsafe_settings_listing_each() -> None:
    unsafe = GOOD_PRODUCTION | {"SECRET_KEY": "short", "DEBUG": "true", "ALLOWED_ORIGINS": "*", "GROQ_API_KEY": ""}

    with pytest.raises(SettingsError) as caught:
        load_settings(unsafe)

    text = str(caught.value)
    for name in ("SECRET_KEY", "DEBUG", "ALLOWED_ORIGINS", "GROQ_API_KEY"):
        assert name in text


def test_production_may_run_offline_when_chosen_explicitly() -> None:
    settings = load_settings(GOOD_PRODUCTION | {"GROQ_API_KEY": "", "LLM_PROVIDER": "offline"})

    assert not settings.use_groq


def test_docs_can_be_enabled_in_production() -> None:
    assert load_settings(GOOD_PRODUCTION | {"DOCS_ENABLED": "true"}).api.docs_enabled


def test_a_missing_redis_url_is_reported_when_used() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        _ = load_settings({}).redis_url


def test_env_file_values_are_overridden_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "local.env"
    env_file.write_text("GROQ_MODEL=from-file\nPORT=9000\n")
    monkeypatch.setenv("ENV_FILE", str(env_file))
    monkeypatch.setenv("PORT", "9100")

    settings = load_settings()

    assert settings.groq.model == "from-file"
    assert settings.api.port == 9100


def test_trusted_proxies_must_be_networks() -> None:
    assert load_settings({"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7"}).limits.trusted_proxies == (
        "10.0.0.0/8",
        "192.168.1.7",
    )
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        load_settings({"TRUSTED_PROXIES": "10.0.0.0/8, the-load-balancer"})


def test_auth_and_limit_defaults() -> None:
    settings = load_settings({})

    assert settings.auth.access_token_ttl == 900
    assert settings.auth.refresh_token_ttl == 30 * 24 * 3600
    assert (settings.limits.requests, settings.limits.window) == (100, 60)
    assert settings.limits.submit_requests < settings.limits.requests < settings.limits.poll_requests
    assert (settings.limits.login_failures, settings.limits.login_lock_window) == (10, 900)
    assert (settings.groq.requests_per_window, settings.groq.tokens_per_window) == (30, 8000)


def test_production_refuses_a_short_previous_signing_key() -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY_PREVIOUS"):
        load_settings(GOOD_PRODUCTION | {"SECRET_KEY_PREVIOUS": "short"})


def test_groq_sampling_settings_have_documented_defaults_and_are_validated() -> None:
    groq = load_settings({}).groq
    assert (groq.temperature, groq.seed, groq.reasoning_effort, groq.max_output_tokens) == (0.2, 7, "low", 4096)

    tuned = load_settings({"GROQ_TEMPERATURE": "0", "GROQ_SEED": "none", "GROQ_REASONING_EFFORT": "HIGH"}).groq
    assert (tuned.temperature, tuned.seed, tuned.reasoning_effort) == (0.0, None, "high")

    with pytest.raises(SettingsError) as bad:
        load_settings({"GROQ_TEMPERATURE": "3", "GROQ_SEED": "x", "GROQ_REASONING_EFFORT": "max"})
    assert len(bad.value.problems) == 3


def test_webhook_defaults_follow_the_standard_webhooks_schedule() -> None:
    hooks = load_settings({}).webhooks

    assert hooks.timeout == 10.0
    assert hooks.retry_schedule == (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    assert hooks.disable_after == 5 * 24 * 3600
    assert hooks.max_endpoints == 20
    assert hooks.secret_overlap == 24 * 3600
    assert not hooks.allow_private
    assert hooks.allow_http
    assert hooks.concurrency == 4
    assert load_settings({"WORKER_CONCURRENCY": "2"}).webhooks.concurrency == 1  # half the slots at most
    assert not load_settings(GOOD_PRODUCTION).webhooks.allow_http  # https:// only in production


def test_webhook_settings_are_parsed_and_checked_together() -> None:
    hooks = load_settings({"WEBHOOK_RETRY_SCHEDULE": "0, 0.5,2", "WEBHOOK_ALLOW_PRIVATE": "true"}).webhooks
    assert hooks.retry_schedule == (0.0, 0.5, 2.0)
    assert hooks.allow_private

    with pytest.raises(SettingsError) as refused:
        load_settings(
            {
                "WEBHOOK_RETRY_SCHEDULE": "0,soon",
                "WEBHOOK_RETRY_JITTER": "1.5",
                "WEBHOOK_CONCURRENCY": "20",
                "WORKER_CONCURRENCY": "4",
                "WEBHOOK_TIMEOUT": "400",
            }
        )
    problems = "\n".join(refused.value.problems)
    assert "WEBHOOK_RETRY_SCHEDULE" in problems
    assert "WEBHOOK_RETRY_JITTER" in problems
    assert "WEBHOOK_CONCURRENCY must not exceed WORKER_CONCURRENCY" in problems
    assert "VISIBILITY_TIMEOUT must be above WEBHOOK_TIMEOUT" in problems


def test_production_refuses_webhooks_to_private_addresses() -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOW_PRIVATE must be false in production"):
        load_settings({**GOOD_PRODUCTION, "WEBHOOK_ALLOW_PRIVATE": "true"})
