"""gunicorn's target for deployments that run gunicorn directly: `gunicorn -k gevent wsgi:app`.

It does not migrate or run first boot: run `scaivault migrate` first (readiness reports pending
migrations as not ready). `scaivault serve` is the supported way to run ScaiVault.
"""
import os
import sys

from scaivault.config import ConfigError, load_settings

try:
    settings = load_settings(os.environ)
except ConfigError as exc:
    sys.stderr.write(f"scaivault: configuration error: {exc.variable}: {exc.problem}\n")
    sys.exit(2)

from scaivault.app import create_app  # noqa: E402  (after the settings are known to be good)

app = create_app(settings)
