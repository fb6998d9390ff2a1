"""The Bicep templates parse, and set every app setting the code and the triggers read.

No Bicep compiler can be had here, so pycep-parser checks the syntax and the test reads the
app settings resource from its parse tree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"

# Settings the template deliberately leaves unset: embedded-mode paths and key/connection-string
# alternatives to managed identity. Each needs a reason.
NOT_IN_AZURE = {
    "RECO_SQLITE_PATH": "embedded mode only",
    "RECO_ARTIFACTS_DIR": "embedded mode only",
    "RECO_API_KEY": "local API key; in Azure the Functions host checks function keys",
    "REDIS_PASSWORD": "access-key alternative to the managed identity",
    "COSMOS_KEY": "key alternative to the managed identity",
    "COSMOS_CREATE_CONTAINERS": "the template creates the containers",
    "COSMOS_VERIFY_TLS": "local Cosmos stand-in only",
    "ARTIFACTS_CONNECTION_STRING": "connection-string alternative to ARTIFACTS_ACCOUNT_URL",
    "EventHubConnection": "connection-string alternative to the namespace + identity",
    "RECO_RULES_FILE": "local alternative to RECO_RULES (the same JSON in a file)",
}


def _bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def _app_settings() -> dict[str, Any]:
    tree = BicepParser().parse(file_path=INFRA / "resources.bicep")
    (config,) = [
        r["config"] for r in tree["resources"].values()
        if r["type"] == "Microsoft.Web/sites/config" and r["config"]["name"] == "appsettings"
    ]
    return dict(config["properties"])


def _names_of(field: Any) -> list[str]:
    alias = field.validation_alias
    if alias is not None and hasattr(alias, "choices"):
        return [str(c) for c in alias.choices]
    return [str(field.alias or alias)]


@pytest.mark.parametrize("path", _bicep_files(), ids=lambda p: p.name)
def test_every_bicep_file_parses(path: Path) -> None:
    tree = BicepParser().parse(file_path=path)
    assert tree.get("resources") or tree.get("modules")


def test_template_sets_every_setting_the_code_reads() -> None:
    template = set(_app_settings())
    missing = []
    for name, field in Settings.model_fields.items():
        names = _names_of(field)
        if any(n in template for n in names) or any(n in NOT_IN_AZURE for n in names):
            continue
        missing.append(f"{name} ({' or '.join(names)})")
    assert not missing, f"settings read by shared/settings.py but not set in infra: {missing}"


def test_template_sets_every_trigger_setting(functions: dict[str, Any]) -> None:
    template = set(_app_settings())
    for f in functions.values():
        for binding in json.loads(f.get_function_json())["bindings"]:
            for value in binding.values():
                for placeholder in re.findall(r"%([^%]+)%", str(value)):
                    assert placeholder in template, f"{f.get_function_name()}: %{placeholder}%"
            connection = binding.get("connection")
            if connection:
                assert f"{connection}__fullyQualifiedNamespace" in template
    assert "AzureWebJobsStorage__accountName" in template


def test_local_settings_example_and_readme_name_the_same_settings() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        names = _names_of(field)
        assert any(n in readme for n in names), f"README does not document {name}"
        if not any(n in NOT_IN_AZURE for n in names):
            assert any(n in example for n in names), f"local.settings.json.example lacks {name}"


def test_every_template_parameter_comes_from_the_azd_environment() -> None:
    """A parameter azd does not map keeps its default on every provision, which also wipes a
    value set by hand in the portal (app settings are replaced as a whole)."""
    declared = set(re.findall(r"^param (\w+) ", (INFRA / "main.bicep").read_text(), re.M))
    mapped = set(json.loads((INFRA / "main.parameters.json").read_text())["parameters"])
    assert declared == mapped


def test_capture_is_switched_on_after_its_identity_may_write_to_storage() -> None:
    text = (INFRA / "resources.bicep").read_text()
    hub = text[text.index("resource feedbackHub "):text.index("resource consumerGroup ")]
    assert re.search(r"dependsOn: \[\s*captureAccess", hub)


def test_the_function_app_package_leaves_out_what_it_does_not_run() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")}
    assert {"tests", "bench", ".venv", "node_modules", ".git", ".data"} <= ignored
    assert not {"shared", "training", "function_app.py", "host.json"} & ignored


def test_the_databricks_principal_gets_the_function_apps_data_access() -> None:
    """Shared keys are off on Cosmos DB, Storage and Redis: the job's principal needs roles."""
    text = (INFRA / "resources.bicep").read_text()
    granted = re.findall(r"resource (\w+) '[^']+' = if \(!empty\(databricksPrincipalId\)\)",
                         text)
    assert sorted(granted) == ["cosmosDatabricksAccess", "redisDatabricksAccess",
                               "storageDatabricksAccess"]
