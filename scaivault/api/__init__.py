"""HTTP blueprints: one per resource, thin, each view a straight run of the request pipeline."""
from __future__ import annotations

import importlib

from flask import Flask

# Module paths of every blueprint module; each exposes `bp`. Add a line per resource.
BLUEPRINT_MODULES = [
    "scaivault.api.health",
    "scaivault.api.auth",
    "scaivault.api.identity",
    "scaivault.api.metrics",
    "scaivault.api.audit",
    "scaivault.api.system",
    "scaivault.api.secrets",
    "scaivault.api.policies",
    "scaivault.api.openapi",
    "scaivault.api.federation",
    "scaivault.api.lifecycle",
    "scaivault.api.webhooks",
    "scaivault.api.subscriptions",
    "scaivault.api.pki",
    "scaivault.api.acme",
    "scaivault.api.dynamic",
    "scaivault.api.token_exchange",
    "scaivault.ui",
]


def register_blueprints(app: Flask) -> None:
    for module_path in BLUEPRINT_MODULES:
        app.register_blueprint(importlib.import_module(module_path).bp)
