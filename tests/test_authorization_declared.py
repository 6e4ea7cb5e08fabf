"""Every authenticated view declares its authorisation on @endpoint (design.md sections 5 and 6).

A view without a declaration would be open to every authenticated caller holding the scope;
this walks the URL map of a fully built app so a forgotten declaration fails here, not in production.
"""
from __future__ import annotations

from flask import Blueprint, Flask

from scaivault.api.authorization import KINDS, Authorization, admin, identity_only, permission, reach, role
from scaivault.api.pipeline import endpoint


def undeclared_views(app: Flask) -> list[str]:
    """Endpoint names of authenticated views with no `authorize=` declaration."""
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        view = app.view_functions[rule.endpoint]
        if not hasattr(view, "authenticated"):
            missing.append(f"{rule.endpoint} (not wrapped in @endpoint)")
        elif view.authenticated and not isinstance(getattr(view, "authorization", None), Authorization):
            missing.append(rule.endpoint)
    return sorted(set(missing))


def test_every_authenticated_view_declares_its_authorisation(app):
    assert undeclared_views(app) == []


def test_the_walk_catches_a_view_that_declares_nothing(make_app):
    app = make_app()
    extra = Blueprint("forgotten", __name__)

    @extra.get("/v1/forgotten")
    @endpoint("auth", tenant=False)
    def forgotten():
        return {}

    @extra.get("/v1/raw")
    def raw():
        return {}

    app.register_blueprint(extra)
    assert undeclared_views(app) == ["forgotten.forgotten", "forgotten.raw (not wrapped in @endpoint)"]


def test_every_declaration_is_one_of_the_known_kinds(app):
    kinds = {app.view_functions[r.endpoint].authorization.kind for r in app.url_map.iter_rules()
             if getattr(app.view_functions[r.endpoint], "authorization", None) is not None}
    assert kinds <= set(KINDS)
    assert {identity_only().kind, permission("read").kind, admin().kind, role("super_admin").kind,
            reach().kind} == set(KINDS)


def test_the_openapi_document_shows_each_operations_authorisation(client):
    doc = client.get("/v1/openapi.json").get_json()
    read = doc["paths"]["/v1/secrets/{path}"]["get"]
    assert read["x-authorization"] == {"kind": "permission", "permission": "read", "arg": "path"}
    assert doc["paths"]["/v1/audit/logs"]["get"]["x-authorization"] == {"kind": "admin", "level": "tenant"}
    assert doc["paths"]["/v1/auth/whoami"]["get"]["x-authorization"] == {"kind": "identity"}
