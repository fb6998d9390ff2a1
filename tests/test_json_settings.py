"""JSON-valued settings (rules, experiments) fail start-up with a sentence naming the setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shared.ids import TENANT_RULE
from shared.runtime import get_runtime
from shared.serving.api import create_app
from shared.serving.experiments import Experiments
from shared.serving.rules import Rules
from shared.settings import Settings, get_settings
from training import cli


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (Rules.parse, "{oops", "RECO_RULES is not valid JSON"),
        (Rules.parse, "[1]", "RECO_RULES must be a JSON object keyed by tenant"),
        (Experiments.parse, "{oops", "RECO_EXPERIMENTS is not valid JSON"),
        (Experiments.parse, "{}", "RECO_EXPERIMENTS must be a JSON list of experiments"),
        (Experiments.parse, '[{"name": "e", "tenants": [], "variants": [{"name": "a", '
                            '"share": 1}]}]', "tenants\n  List should have at least 1 item"),
        (Experiments.parse, '[{"name": "e", "tenants": ["Shop A"], "variants": [{"name": "a", '
                            '"share": 1}]}]',
         "tenants.0\n  Value error, tenant 'Shop A' is not valid"),
        # tenants have no ':' (shared/ids.py): "shop:v1"'s cache keys are under tenant
        # "shop"'s version "v1"
        (Experiments.parse, '[{"name": "e", "tenants": ["shop:v1"], "variants": [{"name": "a", '
                            '"share": 1}]}]',
         re.escape(f"tenants.0\n  Value error, tenant 'shop:v1' is not valid: {TENANT_RULE}")),
        (Rules.parse, '{"shop:v1": {"pinned": [{"itemId": "p:1"}]}}',
         re.escape(f"RECO_RULES: 'shop:v1' is not a tenant id ({TENANT_RULE}) nor \"*\"")),
        (Experiments.parse, '[{"name": "e", "variants": [{"name": "a", "share": 1}]}, '
                            '{"name": "f", "variants": [{"name": "a", "share": 1}]}]',
         "^RECO_EXPERIMENTS: two experiments apply to every tenant"),
        (Experiments.parse, '[{"name": "e", "tenants": ["s"], "variants": [{"name": "a", '
                            '"share": 1}]}, {"name": "f", "tenants": ["s"], "variants": '
                            '[{"name": "a", "share": 1}]}]',
         "^RECO_EXPERIMENTS: tenant 's' is in two experiments"),
        # json.loads takes NaN and Infinity: a NaN factor once demoted the item silently
        (Rules.parse, '{"*": {"boost": {"c": NaN}}}', "must be finite numbers > 0"),
        (Rules.parse, '{"*": {"boostCategories": {"sale": Infinity}}}', "must be finite"),
        (Rules.parse, '{"*": {"boost": {"c": 0}}}', "must be finite numbers > 0"),
        (Rules.parse, '{"shop ": {"blocked": ["x"]}}', "'shop ' is not a tenant id"),
        (Rules.parse, '{"shop": {"pinned": [{"itemId": "no such / item"}]}}',
         "pinned.0.itemId\n  String should match pattern"),
        (Rules.parse, '{"shop": {"blocked": ["ok", "not ok"]}}', "blocked"),
        (Rules.parse, '{"shop": {"pinned": [{"itemId": "p"}, {"itemId": "p", "position": 2}]}}',
         "an item is pinned twice"),
    ],
)
def test_bad_json_settings_are_named(parse, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_empty_json_settings_mean_none_configured() -> None:
    assert Rules.parse("  ").for_tenant("shop").empty
    assert Rules.parse(None).for_tenant("shop").empty
    assert Experiments.parse("").assign("shop", "u1") is None
    assert Experiments.parse(None).assign("shop", "u1") is None


@pytest.mark.parametrize(("env", "message"), [
    ({"RECO_RULES": "{bad"}, "configuration: RECO_RULES is not valid"),
    ({"RECO_RULES_FILE": "/nonexistent/rules.json"},
     "configuration: RECO_RULES_FILE: cannot read /nonexistent/rules.json: No such file"),
    ({"RECO_RULES": "{}", "RECO_RULES_FILE": "/nonexistent/rules.json"},
     "configuration: RECO_RULES and RECO_RULES_FILE are both set"),
    ({"RECO_DEFAULT_TENANT": "shop:v1"}, "configuration: RECO_DEFAULT_TENANT: Value error, "
                                         f"tenant 'shop:v1' is not valid: {TENANT_RULE}"),
    ({"RECO_EXPERIMENTS": '[{"name": "e", "tenants": ["shop:v1"], "variants": '
                          '[{"name": "a", "share": 1}]}]'},
     "configuration: RECO_EXPERIMENTS is invalid"),
])
def test_a_bad_setting_is_a_503_naming_it_and_health_stays_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str,
) -> None:
    """Found at first use (JSON settings, connection strings): was a 500 on every route."""
    monkeypatch.setenv("RECO_DATA_DIR", str(tmp_path / "data"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    try:
        client = TestClient(create_app())
        assert client.get("/api/health").status_code == 200
        for path in ("/api/recommendations/u1", "/api/popular", "/api/ready"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.json()["error"].startswith(message)
    finally:
        get_settings.cache_clear()
        get_runtime.cache_clear()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("RECO_CANDIDATES_PER_USER", "abc", "Input should be a valid integer"),
    ("REDIS_TIMEOUT_SECONDS", "inf", "Input should be a finite number"),  # would mean never
    ("RETRAIN_TUNING_SECONDS", "nan", "Input should be a finite number"),
    ("REDIS_PORT", "99999", "less than or equal to 65535"),
    # events were stored under such a default tenant; and tenant "shop:v1"'s cache keys were
    # under tenant "shop"'s version "v1"
    ("RECO_DEFAULT_TENANT", "bad tenant", "tenant 'bad tenant' is not valid"),
    ("RECO_DEFAULT_TENANT", "shop:v1", f"tenant 'shop:v1' is not valid: {TENANT_RULE}"),
    ("RETRAIN_TENANTS", "shop, shop:v1", f"tenant 'shop:v1' is not valid: {TENANT_RULE}"),
    ("DATABRICKS_JOB_ID", "-3", "greater than or equal to 1"),
    ("RETRAIN_SCHEDULE", "0 3 * * *", "should match pattern"),  # five fields: cron, not NCRONTAB
    ("RETRAIN_SCHEDULE", "99 99 99 * * *", "second: '99' is outside 0-59"),
    ("RETRAIN_SCHEDULE", "0 0 3 * JUNE *", "month: 'JUNE' is not a number"),
    ("RETRAIN_SCHEDULE", "0 0 3 * * 1-9", "day of week: '1-9' is outside 0-6"),
    ("RETRAIN_SCHEDULE", "0:99:99", "a TimeSpan needs hh < 24, mm < 60"),
    ("RECO_API_KEY", "clé-secrète", "must be printable ASCII"),
    # a connection string or URL with the key, pasted where an endpoint or host belongs: the
    # SDKs quoted it in errors that reached 503 answers and logs
    ("COSMOS_ENDPOINT", "AccountEndpoint=https://a.documents.azure.com:443/;AccountKey=S3cr3t==;",
     "must be the account's https:// endpoint URL alone"),
    ("REDIS_HOST", "rediss://:S3cr3t@cache.example.net:6380", "must be a host name alone"),
])
def test_a_bad_setting_stops_the_cli_with_a_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    name: str, value: str, message: str,
) -> None:
    monkeypatch.setenv("RECO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    try:
        assert cli.main(["list-versions"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: configuration: {name}: ") and message in err
        assert "S3cr3t" not in err
    finally:
        get_settings.cache_clear()
        get_runtime.cache_clear()


@pytest.mark.parametrize("schedule", ["0 0 3 * * *", "0 */5 * * * MON-FRI",
                                      "0 30 9 1,15 JAN-JUN sun", "00:05:00", "1.12:00:00"])
def test_schedules_the_functions_host_takes_are_taken(schedule: str) -> None:
    assert Settings(RETRAIN_SCHEDULE=schedule).retrain_schedule == schedule


def test_a_bad_setting_does_not_stop_the_function_app_from_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """function_app.py configures telemetry at import: a setting Settings refuses raised
    there, so no function loaded, /api/health included, instead of the documented 503s."""
    from shared.telemetry import configure_telemetry

    monkeypatch.setenv("RECO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECO_CANDIDATES_PER_USER", "5")
    get_settings.cache_clear()
    get_runtime.cache_clear()
    try:
        assert configure_telemetry() is False
        client = TestClient(create_app())
        assert client.get("/api/health").status_code == 200
        response = client.get("/api/recommendations/u1")
        assert response.status_code == 503
        assert response.json()["error"].startswith("configuration: RECO_CANDIDATES_PER_USER")
    finally:
        get_settings.cache_clear()
        get_runtime.cache_clear()
