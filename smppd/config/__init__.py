"""Daemon configuration: a TOML file validated once, at load, into typed models.

`load_config(path)` reads the file, applies environment overrides, merges each
operator's keys over `[defaults]` over the built-in defaults and validates the
whole thing, cross-field rules included. Every problem found is reported at once
in a `ConfigError`, each under the dotted key it concerns (`operators.roshan.tps`).

Relative paths (`daemon.state_dir`, `store.path`, `vault.secret_id_file`) are kept
relative: they resolve against the daemon's current working directory, not the
config file's directory (systemd units set `WorkingDirectory=`).

Secrets (SMPP passwords, database/Redis/NATS URLs) are `SecretStr`: repr, str and
`model_dump` mask them, and no error message ever contains their value.

The package by concern: `fields` (value types, the status table), `sections`
([daemon], [api], [store], [routing]), `cluster` ([redis], [nats], [leases]),
`access` ([vault], [auth]), `webhooks` ([webhooks], [[tenants]]), `operators`
([defaults], [[operators]]), `model` (the whole file), `loading` (read, override,
validate, report), `errors`. Import from `smppd.config`.
"""

from smppd.config.access import AuthSection, AuthToken, VaultSection
from smppd.config.cluster import LeasesSection, NatsSection, RedisSection
from smppd.config.errors import ConfigError, ConfigFileError
from smppd.config.fields import DEFAULT_STATUS_TABLE, StatusRule
from smppd.config.loading import ENV_OVERRIDES, check_config_command, load_config
from smppd.config.model import Config
from smppd.config.operators import OperatorConfig, OperatorSettings
from smppd.config.sections import ApiSection, DaemonSection, RoutingSection, StoreSection
from smppd.config.webhooks import MIN_SECRET, TenantConfig, WebhooksSection

__all__ = [
    "DEFAULT_STATUS_TABLE",
    "ENV_OVERRIDES",
    "MIN_SECRET",
    "ApiSection",
    "AuthSection",
    "AuthToken",
    "Config",
    "ConfigError",
    "ConfigFileError",
    "DaemonSection",
    "LeasesSection",
    "NatsSection",
    "OperatorConfig",
    "OperatorSettings",
    "RedisSection",
    "RoutingSection",
    "StatusRule",
    "StoreSection",
    "TenantConfig",
    "VaultSection",
    "WebhooksSection",
    "check_config_command",
    "load_config",
]
