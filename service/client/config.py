"""The client's API URL and key, from flags, then the environment, then a config file.

The config file is TOML with two keys, `api_url` and `api_key`, at
`$CRINGE_CONFIG`, or else `$XDG_CONFIG_HOME/cringe/config.toml` (`~/.config/...`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "CRINGE_API_URL"
KEY_VARIABLE = "CRINGE_API_KEY"
CONFIG_VARIABLE = "CRINGE_CONFIG"


class ConfigError(ValueError):
    """The client's configuration is missing a value or cannot be read."""


@dataclass(frozen=True)
class ClientConfig:
    api_url: str
    api_key: str


def config_path() -> Path:
    explicit = os.environ.get(CONFIG_VARIABLE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cringe" / "config.toml"


def _read_file(path: Path, required: bool) -> dict[str, object]:
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} ({CONFIG_VARIABLE}) does not exist; "
                              "create it or unset the variable")
        return {}
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}; it must be TOML with "
                          'the keys api_url = "http://..." and api_key = "ck_..."') from error
    unknown = sorted(set(values) - {"api_url", "api_key"})
    if unknown:
        raise ConfigError(f"config file {path} has unknown keys {unknown}; the accepted keys "
                          "are api_url and api_key")
    for name, value in values.items():
        if not isinstance(value, str):
            raise ConfigError(f"config file {path}: {name} = {value!r} must be a string")
    return values


def load_config(api_url: str | None = None, api_key: str | None = None) -> ClientConfig:
    """Resolve the URL and key: flag, then environment variable, then config file."""
    path = config_path()
    stored = _read_file(path, required=CONFIG_VARIABLE in os.environ)
    url = api_url or os.environ.get(URL_VARIABLE) or str(stored.get("api_url") or "")
    key = api_key or os.environ.get(KEY_VARIABLE) or str(stored.get("api_key") or "")
    url = (url or DEFAULT_API_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"API URL {url!r} is not an http:// or https:// URL; set "
                          f"{URL_VARIABLE} or --api-url, e.g. {DEFAULT_API_URL}")
    if not key:
        raise ConfigError(f"no API key: set {KEY_VARIABLE}, pass --api-key, or put api_key in "
                          f"{path}; an administrator creates one with "
                          "`cringe keys create --project NAME`")
    return ClientConfig(api_url=url, api_key=key)
