"""The KMS provider interface the keyring wraps partner keys with, and provider selection.

A provider plugin returns {name: factory} from the `scaivault_kms_providers` hook; the
factory is called as factory(settings, key_ref) where key_ref None means the configured
primary key, and returns a KmsProvider bound to that one key.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ..config import ConfigError, Settings
from .errors import KmsError, KmsUnavailable


class KmsProvider:
    """One KMS key that wraps and unwraps small secrets (partner keys); the key never leaves it."""

    name = "abstract"
    supports_aad = True          # False: the KMS cannot bind associated data (the keyring still does)

    def __init__(self, key_ref: str):
        self.key_ref = key_ref

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        raise NotImplementedError

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        raise NotImplementedError

    def rotate_key(self) -> bool:
        """Ask the KMS for a new version of this key; False when the KMS cannot (re-wrap only)."""
        return False

    def describe(self) -> dict[str, Any]:
        """Public facts about the key (never material)."""
        return {"provider": self.name, "key_ref": self.key_ref}

    def close(self) -> None:
        return None


KmsFactory = Callable[[Settings, "str | None"], KmsProvider]


def require_option(settings: Settings, *names: str) -> str:
    """The first of the KMS_* variables `names` that is set, or ConfigError naming them."""
    for name in names:
        value = settings.kms_options.get(name)
        if value and value.strip():
            return value.strip()
    raise ConfigError(names[0], f"is required for KMS_PROVIDER={settings.kms_provider}")


def read_secret_file(variable: str, path: str) -> str:
    """A PIN or token read from a file (stripped); the value itself is never logged."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise ConfigError(variable, f"cannot read {path} ({exc.strerror})") from None
    if not value:
        raise ConfigError(variable, f"{path} is empty")
    return value


def missing_sdk(provider: str, module: str, extra: str) -> ConfigError:
    return ConfigError("KMS_PROVIDER", f"the {provider} provider needs the Python package {module!r}; "
                                       f"install it with: pip install 'scaivault[{extra}]'")


DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_ATTEMPTS = 2


def call_limits(settings: Settings) -> tuple[float, int]:
    """(KMS_TIMEOUT seconds per attempt, KMS_RETRIES attempts per call) -- one meaning in every provider.

    KMS_RETRIES counts attempts, not retries: 2 means the first try and one more. A call
    against a KMS that does not answer therefore takes at most about timeout x attempts.
    """
    opts = settings.kms_options
    try:
        timeout = float(opts.get("KMS_TIMEOUT") or DEFAULT_TIMEOUT_SECONDS)
    except ValueError:
        raise ConfigError("KMS_TIMEOUT", "must be a number of seconds") from None
    try:
        attempts = int(opts.get("KMS_RETRIES") or DEFAULT_ATTEMPTS)
    except ValueError:
        raise ConfigError("KMS_RETRIES", "must be an integer (attempts per KMS call)") from None
    if timeout <= 0:
        raise ConfigError("KMS_TIMEOUT", "must be more than 0 seconds")
    if attempts < 1:
        raise ConfigError("KMS_RETRIES", "must be at least 1 (attempts per KMS call)")
    return timeout, attempts


def with_attempts(attempts: int, fn: Callable[[], Any], backoff: float = 0.1) -> Any:
    """Run `fn` up to `attempts` times while it raises KmsUnavailable (for SDKs without an attempts knob)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except KmsUnavailable:
            if attempt == attempts:
                raise
            time.sleep(min(1.0, backoff * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


def timed(operation: str, fn: Callable[[], bytes]) -> bytes:
    """Run one KMS call, recording scaivault_kms_latency_seconds{operation} when metrics exist."""
    started = time.perf_counter()
    try:
        return fn()
    finally:
        _observe(operation, time.perf_counter() - started)


def _observe(operation: str, seconds: float) -> None:
    try:
        from .. import metrics
    except ImportError:
        return
    histogram = getattr(metrics, "KMS_LATENCY", None)
    if histogram is not None:
        histogram.labels(operation=operation).observe(seconds)


__all__ = ["KmsProvider", "KmsFactory", "KmsError", "require_option", "read_secret_file", "missing_sdk", "timed",
           "call_limits", "with_attempts"]
