"""Client configuration (spec/50 6.2): ~/.scaivault/config.json (mode 0600), overridden by
SCAIVAULT_URL, SCAIVAULT_TOKEN, SCAIVAULT_PARTNER_ID, SCAIVAULT_TENANT_ID and SCAIVAULT_DEBUG.

Shared by the `scaivault` client commands and `scaivault-mcp`; the server never reads it.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigurationError

# file key -> environment variable overriding it
ENV_OVERRIDES = {
    "base_url": "SCAIVAULT_URL",
    "token": "SCAIVAULT_TOKEN",
    "partner_id": "SCAIVAULT_PARTNER_ID",
    "tenant_id": "SCAIVAULT_TENANT_ID",
    "debug": "SCAIVAULT_DEBUG",
    "client_id": "SCAIVAULT_CLIENT_ID",
    "client_secret": "SCAIVAULT_CLIENT_SECRET",
    "scaikey_url": "SCAIKEY_URL",
    "ca_cert": "SCAIVAULT_CA_CERT",
    "timeout": "SCAIVAULT_TIMEOUT",
}
SECRET_KEYS = ("token", "client_secret")


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """~/.scaivault/config.json (HOME from `env` when given, so tests and wrappers can point it elsewhere)."""
    home = (env or {}).get("HOME")
    return (Path(home) if home else Path.home()) / ".scaivault" / "config.json"


@dataclass
class ClientConfig:
    base_url: str | None = None
    token: str | None = None
    partner_id: str | None = None
    tenant_id: str | None = None
    debug: bool = False
    client_id: str | None = None
    client_secret: str | None = None
    scaikey_url: str | None = None
    ca_cert: str | None = None
    timeout: float = 30.0

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, path: Path | None = None) -> "ClientConfig":
        """The file's values, then the environment's on top."""
        env = os.environ if env is None else env
        values: dict[str, Any] = dict(read_file(path or config_path(env)))
        for key, variable in ENV_OVERRIDES.items():
            if env.get(variable):
                values[key] = env[variable]
        return cls(**{k: coerce(k, v) for k, v in values.items() if k in cls.keys()})

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ScaiVaultClient / SyncScaiVaultClient."""
        kwargs: dict[str, Any] = {"tenant_id": self.tenant_id, "partner_id": self.partner_id, "timeout": self.timeout}
        if self.ca_cert:
            kwargs["verify"] = self.ca_cert
        if self.client_id or self.client_secret:
            kwargs.update(client_id=self.client_id, client_secret=self.client_secret, scaikey_url=self.scaikey_url)
        return kwargs

    def redacted(self) -> dict[str, Any]:
        out = asdict(self)
        for key in SECRET_KEYS:
            if out.get(key):
                out[key] = out[key][:4] + "…" if len(out[key]) > 12 else "…"
        return out


def coerce(key: str, value: Any) -> Any:
    if key == "debug":
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    if key == "timeout":
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"timeout must be a number of seconds, not {value!r}", code="invalid_config")
        if seconds <= 0:
            raise ConfigurationError("timeout must be positive", code="invalid_config")
        return seconds
    if key == "base_url" and value:
        value = str(value).rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ConfigurationError("base_url must start with http:// or https://", code="invalid_config")
    return value


def read_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{path} is not valid JSON", code="invalid_config") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path} must hold a JSON object", code="invalid_config")
    return data


def update_file(changes: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Apply `changes` (None removes a key) and write the file atomically with mode 0600 (directory 0700)."""
    data = read_file(path)
    for key, value in changes.items():
        if key not in ClientConfig.keys():
            raise ConfigurationError(f"unknown key {key!r}; known: {', '.join(ClientConfig.keys())}",
                                     code="invalid_config")
        if value is None:
            data.pop(key, None)
        else:
            data[key] = coerce(key, value)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")   # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return data
