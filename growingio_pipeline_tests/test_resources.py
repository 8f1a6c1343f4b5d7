"""The export resource is the client's configuration: one schema, one default per setting, settable from the
launchpad and from the environment."""

from __future__ import annotations

import dataclasses
from typing import Any

import dagster as dg
import pytest

from growingio_pipeline.export_api import DOC, ClientSettings
from growingio_pipeline.resources import ENV_PREFIX, SECRET_SETTINGS, GrowingIOExportResource, resources_from_env

PROJECT = "9b0d1f56d5baff1a"
CLIENT_FIELDS = dataclasses.fields(ClientSettings)
REQUIRED = {"project_id"}
"""Client settings without a default: optional on the resource, so the definitions load without them."""
CHANGED_TEXT = {
    "token": "token-from-env",
    "project_id": PROJECT,
    "base_url": "http://127.0.0.1:9",
    "client_id": "client-from-env",
    "private_key": "private-key-from-env",
    "project_uid": "uidfromenv",
    "lake_catalog": "data/other-lake/catalog.sqlite",
}
"""A value other than the default for each text setting."""


def test_the_resource_has_every_client_setting_with_its_default_and_description() -> None:
    resource_fields = GrowingIOExportResource.model_fields

    for setting in CLIENT_FIELDS:
        resource_field = resource_fields[setting.name]
        expected_default = None if setting.name in REQUIRED else setting.default
        assert resource_field.default == expected_default, setting.name
        assert resource_field.description == setting.metadata[DOC], setting.name
    assert {setting.name for setting in CLIENT_FIELDS if setting.default is dataclasses.MISSING} == REQUIRED


def test_every_setting_is_in_the_launchpad_config_schema() -> None:
    config_fields = GrowingIOExportResource().get_resource_definition().config_schema.config_type.fields

    client_names = {setting.name for setting in CLIENT_FIELDS}
    assert set(config_fields) == client_names | {"running_retry_after_s", "running_max_retries"}


def _changed_value(setting: dataclasses.Field[Any]) -> str:
    """A value other than the default, as environment text."""
    if setting.name in CHANGED_TEXT:
        return CHANGED_TEXT[setting.name]
    return str(setting.default + 1)


def test_every_client_setting_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {f"{ENV_PREFIX}{setting.name.upper()}": _changed_value(setting) for setting in CLIENT_FIELDS}
    for name in SECRET_SETTINGS:  # secrets are read at run time (EnvVar)
        monkeypatch.setenv(f"{ENV_PREFIX}{name.upper()}", environ[f"{ENV_PREFIX}{name.upper()}"])

    resource = resources_from_env(environ)["growingio"].process_config_and_initialize()

    settings = resource.client_settings()
    for setting in CLIENT_FIELDS:
        expected = type(getattr(settings, setting.name))(_changed_value(setting))
        assert getattr(settings, setting.name) == expected, setting.name
        assert expected != setting.default, setting.name


def test_the_retry_settings_of_a_running_export_come_from_the_environment_too() -> None:
    environ = {"GROWINGIO_RUNNING_RETRY_AFTER_S": "60", "GROWINGIO_RUNNING_MAX_RETRIES": "2"}

    resource = resources_from_env(environ)["growingio"]

    assert (resource.running_retry_after_s, resource.running_max_retries) == (60, 2)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GROWINGIO_READ_TIMEOUT_S", "soon", "GROWINGIO_READ_TIMEOUT_S must be a number, got 'soon'"),
        ("GROWINGIO_MAX_LINK_REFRESHES", "2.5", "GROWINGIO_MAX_LINK_REFRESHES must be a whole number, got '2.5'"),
    ],
)
def test_a_malformed_setting_in_the_environment_is_named(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resources_from_env({variable: value})


def test_the_definitions_load_with_no_setting_in_the_environment() -> None:
    resource = resources_from_env({})["growingio"]

    assert (resource.token, resource.project_id) == (None, None)
    assert resource.running_deadline_s == ClientSettings.running_deadline_s == 300.0


def test_a_secret_from_the_environment_is_passed_by_name_only() -> None:
    resource = resources_from_env({"GROWINGIO_TOKEN": "secret-token", "GROWINGIO_PRIVATE_KEY": "secret-key"})[
        "growingio"
    ]

    assert {"token", "private_key"} == SECRET_SETTINGS
    assert isinstance(resource.token, dg.EnvVar) and resource.token.env_var_name == "GROWINGIO_TOKEN"
    assert isinstance(resource.private_key, dg.EnvVar) and resource.private_key.env_var_name == "GROWINGIO_PRIVATE_KEY"
