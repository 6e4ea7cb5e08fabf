"""GET /v1/openapi.json: every route, valid OpenAPI 3.1, bodies described by the validating models."""
from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from scaivault.api.openapi import build_document


@pytest.fixture(scope="module")
def document(make_app):
    app = make_app()
    resp = app.test_client().get("/v1/openapi.json")
    assert resp.status_code == 200
    return app, resp.get_json()


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>", r"{\1}", rule)


def test_the_document_is_valid_openapi_3_1(document):
    _, doc = document
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_api_route_of_the_url_map_is_documented(document):
    app, doc = document
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not rule.rule.startswith("/v1/"):   # the admin UI is not the API
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in doc["paths"].get(_openapi_path(rule.rule), {}):
                missing.append(f"{method} {rule.rule}")
    assert not missing, missing
    assert "/v1/secrets/{path}:versions" in doc["paths"]
    assert "/v1/openapi.json" in doc["paths"]


def test_request_bodies_are_the_schemas_of_the_models_that_validate_them(document):
    app, doc = document
    schemas = doc["components"]["schemas"]
    checked = 0
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        model = getattr(view, "body_model", None)
        if model is None:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = doc["paths"][_openapi_path(rule.rule)][method.lower()]
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            documented = schemas[ref.rsplit("/", 1)[1]]
            assert set(documented["properties"]) == set(model.model_json_schema()["properties"]), rule.rule
            assert set(documented.get("required", [])) == set(model.model_json_schema().get("required", []))
            checked += 1
    assert checked >= 10


def test_operations_document_scopes_rate_categories_and_error_responses(document):
    _, doc = document
    read = doc["paths"]["/v1/secrets/{path}"]["get"]
    assert read["x-required-scope"] == "secrets:read" and read["x-rate-limit-category"] == "secrets:read"
    assert {"401", "403", "404", "410", "429", "500"} <= set(read["responses"])
    assert read["security"] == [{"bearerAuth": []}]
    assert [p["name"] for p in read["parameters"]] == ["path", "version"]
    write = doc["paths"]["/v1/secrets/{path}"]["put"]
    assert {"200", "201", "409", "413", "422"} <= set(write["responses"])
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["properties"]["error"]["required"] == ["code", "message", "request_id"]
    assert doc["paths"]["/v1/health"]["get"]["security"] == []


def test_a_body_violating_the_documented_schema_is_rejected_with_422(make_app, scaikey, auth):
    app = make_app()
    token = scaikey.mint(sub="usr_oa", email="oa@acme.example", tenant_id="tnt_openapi", partner_id="ptn_test",
                         role="tenant_admin", scopes=("secrets:write",))
    resp = app.test_client().put("/v1/secrets/oa/a", json={"data": "not-an-object"}, headers=auth(token))
    assert resp.status_code == 422
    assert "data" in resp.get_json()["error"]["details"]["fields"]


def test_the_document_is_generated_once_per_app(document):
    app, doc = document
    assert app.extensions["scaivault_openapi"] is not None
    assert build_document(app)["paths"].keys() == doc["paths"].keys()
