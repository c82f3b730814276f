"""Checks of docker-compose.yaml and .env.example that need no Docker engine."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from cryptography.fernet import Fernet

if TYPE_CHECKING:
    from collections.abc import Mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
TOKEN_DDL = "plugins/parkmobile_token/sql/pm_api_tokens.sql"
HISTORY_DDL = "plugins/parkmobile_token/sql/pm_api_token_refreshes.sql"

AIRFLOW_IMAGE = re.compile(r"apache/airflow:3\.3\.\d+(-python3\.\d+)?")
# Compose interpolation: `$$` is an escaped dollar; otherwise ${NAME} with an optional
# `-`/`:-` default, `?`/`:?` error or `+`/`:+` alternative.
DOLLAR_TOKEN = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
)
SECRET_SETTING = re.compile(r"PASSWORD|SECRET|FERNET|(^|_)CONN(_|$)")
SECRET_VARIABLE = re.compile(r"PASSWORD|SECRET|KEY")
URL_PASSWORD = re.compile(r"://[^:/@]+:(?P<password>[^@]+)@")
PLACEHOLDERS = {"change-me", "your-client-secret"}


class InterpolationError(Exception):
    """A required variable is unset or empty, so Compose would refuse the file."""


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def airflow_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith("apache/airflow:")
    }


def variable_references(text: str) -> list[re.Match[str]]:
    return [match for match in DOLLAR_TOKEN.finditer(text) if match["name"]]


def read_env_file(path: Path) -> dict[str, str]:
    """Read NAME=value lines as Compose does for a simple .env (quotes stripped, no interpolation)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, separator, value = stripped.partition("=")
        assert separator, f"not a NAME=value line in {path.name}: {line!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute variables the way Compose does."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name is None:
            return "$"
        operator, argument = match["operator"] or "", match["argument"] or ""
        value = env.get(name)
        missing = value is None or (operator.startswith(":") and value == "")
        if operator.endswith("?") and missing:
            raise InterpolationError(f"{name}: {argument}")
        if operator.endswith("-") and missing:
            return argument
        if operator.endswith("+"):
            return "" if missing else argument
        return value or ""

    return DOLLAR_TOKEN.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    return node


def filled_env() -> dict[str, str]:
    """The .env.example values with the two generated secrets a user has to add."""
    return read_env_file(ENV_EXAMPLE) | {
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(64),
    }


def compose_validator() -> str:
    beside_python = Path(sys.executable).parent / "check-jsonschema"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("check-jsonschema")
    if found is None:
        pytest.fail("check-jsonschema is not installed: install the project's dev extra")
    return found


def assert_valid_compose_file(path: Path) -> None:
    result = subprocess.run(
        [compose_validator(), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_passes_the_compose_spec_validator() -> None:
    assert_valid_compose_file(COMPOSE_FILE)


@pytest.mark.parametrize(
    ("service", "command"),
    [
        pytest.param("airflow-init", ["db", "migrate"], id="init-migrates"),
        pytest.param("airflow-apiserver", "api-server", id="api-server"),
        pytest.param("airflow-scheduler", "scheduler", id="scheduler"),
        pytest.param("airflow-dag-processor", "dag-processor", id="dag-processor"),
    ],
)
def test_each_airflow_component_runs_in_its_own_service(service: str, command: str | list[str]) -> None:
    assert airflow_services(load_compose())[service]["command"] == command


def test_long_running_airflow_services_wait_for_the_migration() -> None:
    services = airflow_services(load_compose())
    for name, service in services.items():
        if name == "airflow-init":
            continue
        assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}, name


def test_airflow_services_run_an_airflow_3_3_image() -> None:
    services = airflow_services(load_compose())
    assert len(services) >= 4
    for name, service in services.items():
        assert AIRFLOW_IMAGE.fullmatch(service["image"]), f"{name}: {service['image']}"


def test_airflow_services_mount_dags_and_plugins_read_only() -> None:
    for name, service in airflow_services(load_compose()).items():
        assert "./dags:/opt/airflow/dags:ro" in service["volumes"], name
        assert "./plugins:/opt/airflow/plugins:ro" in service["volumes"], name


def test_airflow_services_share_one_environment() -> None:
    environments = [service["environment"] for service in airflow_services(load_compose()).values()]
    assert all(environment == environments[0] for environment in environments)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        pytest.param("AIRFLOW__CORE__EXECUTOR", "LocalExecutor", id="local-executor"),
        pytest.param("AIRFLOW__CORE__LOAD_EXAMPLES", "false", id="no-examples"),
        pytest.param(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            id="simple-auth-manager",
        ),
        pytest.param(
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
            "http://airflow-apiserver:8080/execution/",
            id="execution-api-on-api-server",
        ),
    ],
)
def test_airflow_setting(setting: str, expected: str) -> None:
    environment = airflow_services(load_compose())["airflow-scheduler"]["environment"]
    assert environment[setting] == expected


@pytest.mark.parametrize(
    ("setting", "variable"),
    [
        pytest.param("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY", id="fernet-key"),
        pytest.param("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET", id="jwt-secret"),
        pytest.param("AIRFLOW_CONN_PARKMOBILE_AUTH", "AIRFLOW_CONN_PARKMOBILE_AUTH", id="auth-connection"),
        pytest.param("AIRFLOW_CONN_PARKMOBILE_DB", "AIRFLOW_CONN_PARKMOBILE_DB", id="db-connection"),
    ],
)
def test_secret_setting_is_required_not_defaulted(setting: str, variable: str) -> None:
    value = airflow_services(load_compose())["airflow-scheduler"]["environment"][setting]
    match = DOLLAR_TOKEN.fullmatch(value)
    assert match is not None, f"{setting} is not taken from a variable: {value!r}"
    assert (match["name"], match["operator"]) == (variable, ":?")


def test_compose_refuses_to_start_without_a_fernet_key() -> None:
    env = filled_env() | {"AIRFLOW_FERNET_KEY": ""}
    with pytest.raises(InterpolationError, match="AIRFLOW_FERNET_KEY"):
        interpolate_tree(load_compose(), env)


def test_airflow_metadata_lives_in_postgres_apart_from_the_token_mysql() -> None:
    compose = load_compose()
    connection = airflow_services(compose)["airflow-scheduler"]["environment"][
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
    ]
    assert connection.startswith("postgresql")
    assert "@postgres:" in connection
    assert compose["services"]["postgres"]["image"].startswith("postgres:16")


def test_api_server_is_published_on_localhost_only() -> None:
    compose = load_compose()
    assert compose["services"]["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_mysql_applies_the_token_and_history_ddl_from_the_repository_on_first_start() -> None:
    mysql = load_compose()["services"]["mysql"]
    init_mounts = [
        volume.split(":")[0]
        for volume in mysql["volumes"]
        if volume.split(":")[1].startswith("/docker-entrypoint-initdb.d/")
    ]
    assert init_mounts == [f"./{TOKEN_DDL}", f"./{HISTORY_DDL}"]
    for ddl in (TOKEN_DDL, HISTORY_DDL):
        assert (REPO_ROOT / ddl).is_file(), f"{ddl} is mounted but missing from the repository"


def test_mysql_keeps_the_parkmobile_database_in_a_named_volume_with_a_healthcheck() -> None:
    compose = load_compose()
    mysql = compose["services"]["mysql"]
    assert mysql["image"] == "mysql:8.4"
    assert mysql["environment"]["MYSQL_DATABASE"] == "parkmobile"
    assert "healthcheck" in mysql
    data_volume = next(volume for volume in mysql["volumes"] if volume.endswith(":/var/lib/mysql"))
    assert data_volume.split(":")[0] in compose["volumes"]


def test_compose_file_holds_no_literal_secret() -> None:
    compose = load_compose()
    for name, service in compose["services"].items():
        for setting, value in service.get("environment", {}).items():
            if not SECRET_SETTING.search(setting):
                continue
            references = variable_references(value)
            assert references, f"{name}: {setting} is a literal"
            for reference in references:
                assert reference["operator"] == ":?", f"{name}: {setting} has a default or is optional"
            url = URL_PASSWORD.search(value)
            if url:
                assert DOLLAR_TOKEN.fullmatch(url["password"]), f"{name}: {setting} has a literal password"
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"[A-Za-z0-9_-]{43}=", text), "something shaped like a Fernet key"
    assert "PRIVATE KEY" not in text


def test_env_example_defines_every_variable_the_compose_file_uses() -> None:
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"\$(?![{$])", text.replace("$$", "")), "an unbraced $VARIABLE reference"
    used = {reference["name"] for reference in variable_references(text)}
    missing = used - read_env_file(ENV_EXAMPLE).keys()
    assert not missing, f"missing from .env.example: {sorted(missing)}"


def test_env_example_explains_every_variable_in_a_comment() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert index > 0, f"no comment above {line!r}"
            assert lines[index - 1].startswith("#"), f"no comment above {line!r}"


@pytest.mark.parametrize("variable", ["AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET"])
def test_env_example_leaves_generated_secrets_empty(variable: str) -> None:
    assert read_env_file(ENV_EXAMPLE)[variable] == ""


def test_env_example_holds_placeholder_passwords_only() -> None:
    env = read_env_file(ENV_EXAMPLE)
    for name, value in env.items():
        if name.startswith("AIRFLOW_CONN_"):
            password = json.loads(value).get("password", "")
            assert password in PLACEHOLDERS, f"{name} password is not a placeholder"
        elif SECRET_VARIABLE.search(name):
            assert value in PLACEHOLDERS | {""}, f"{name} is not a placeholder"


def test_env_example_connections_point_at_the_compose_services() -> None:
    env = read_env_file(ENV_EXAMPLE)
    mysql = load_compose()["services"]["mysql"]["environment"]
    auth = json.loads(env["AIRFLOW_CONN_PARKMOBILE_AUTH"])
    database = json.loads(env["AIRFLOW_CONN_PARKMOBILE_DB"])
    assert auth["conn_type"] == "http"
    assert database["conn_type"] == "mysql"
    assert database["host"] == "mysql"
    assert database["schema"] == mysql["MYSQL_DATABASE"]
    assert database["login"] == mysql["MYSQL_USER"]
    assert database["password"] == env["MYSQL_PASSWORD"]


def test_compose_file_filled_from_env_example_still_validates(tmp_path: Path) -> None:
    env = filled_env()
    filled = interpolate_tree(load_compose(), env)
    scheduler = filled["services"]["airflow-scheduler"]["environment"]
    assert scheduler["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW_FERNET_KEY"]
    assert json.loads(scheduler["AIRFLOW_CONN_PARKMOBILE_DB"])["host"] == "mysql"
    filled_file = tmp_path / "docker-compose.yaml"
    filled_file.write_text(yaml.safe_dump(filled, sort_keys=False))
    assert_valid_compose_file(filled_file)
