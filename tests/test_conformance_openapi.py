"""Issue 16 item 8: a precise OpenAPI document (patterns, ranges, enums, statuses, content types, links),
and OPTIONS on colon routes advertising their own methods."""
from __future__ import annotations

import re

import pytest

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, new_tenant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture(scope="module")
def doc(app):
    return app.test_client().get("/v1/openapi.json").get_json()


def _param(op: dict, name: str) -> dict:
    return next(p for p in op["parameters"] if p["name"] == name)


def test_parameters_declare_patterns_ranges_and_enums(doc):
    read = doc["paths"]["/v1/secrets/{path}"]["get"]
    assert re.fullmatch(_param(read, "path")["schema"]["pattern"], "app/db/password")
    assert not re.fullmatch(_param(read, "path")["schema"]["pattern"], "App//x")
    assert _param(read, "version")["schema"] == {"type": "integer", "minimum": 1, "maximum": 2147483647}
    listing = doc["paths"]["/v1/secrets"]["get"]
    assert _param(listing, "limit")["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert _param(listing, "include_deleted")["schema"]["enum"] == ["true", "false"]
    assert _param(listing, "delimiter")["schema"]["enum"] == ["/"]
    assert re.fullmatch(_param(listing, "expires_within")["schema"]["pattern"], "30d")
    assert _param(doc["paths"]["/v1/policies"]["get"], "scope")["schema"]["enum"] == ["tenant", "partner"]
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for param in op.get("parameters", []):
                assert param["schema"] != {"type": "string"}, (path, param["name"])   # never a bare string


def test_statuses_and_content_types(doc):
    export = doc["paths"]["/v1/audit/export"]["post"]["responses"]
    assert "202" in export and "200" not in export and "Location" in export["202"]["headers"]
    assert list(doc["paths"]["/v1/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    download = doc["paths"]["/v1/audit/exports/{export_id}/files/{number}"]["get"]["responses"]["200"]["content"]
    assert set(download) == {"application/x-ndjson", "text/csv"}
    assert "application/pkix-crl" in doc["paths"]["/v1/pki/ca/{ca_id}/crl"]["get"]["responses"]["200"]["content"]


def test_creates_link_to_get_update_delete_by_id(doc):
    links = doc["paths"]["/v1/policies"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"]: link["parameters"] for link in links.values()}
    ops = doc["paths"]["/v1/policies/{policy_id}"]
    for method in ("get", "put", "patch", "delete"):
        assert targets[ops[method]["operationId"]] == {"policy_id": "$response.body#/id"}
    bindings = doc["paths"]["/v1/policies/{policy_id}/bindings"]["post"]["responses"]["201"]["links"]
    (unbind,) = bindings.values()
    assert unbind["parameters"] == {"policy_id": "$request.path.policy_id", "binding_id": "$response.body#/id"}
    export = doc["paths"]["/v1/audit/export"]["post"]["responses"]["202"]["links"]
    assert {"export_id": "$response.body#/export_id"} in [link["parameters"] for link in export.values()]
    engines = doc["paths"]["/v1/dynamic/engines"]["post"]["responses"]["201"]["links"]
    assert all(link["parameters"] == {"name": "$response.body#/name"} for link in engines.values())


@pytest.mark.parametrize("url, allowed", [
    ("/v1/secrets/app/db:versions", {"GET", "HEAD", "OPTIONS"}),
    ("/v1/secrets/app/db:metadata", {"GET", "HEAD", "PATCH", "OPTIONS"}),
    ("/v1/secrets/app/db:restore", {"POST", "OPTIONS"}),
    ("/v1/partner/secrets/app/db:destroy", {"POST", "OPTIONS"}),
    ("/v1/secrets/app/db", {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}),
    ("/v1/policies/test", {"POST", "OPTIONS"}),
])
def test_options_on_colon_routes_advertise_their_own_methods(app, url, allowed):
    resp = app.test_client().options(url)
    assert resp.status_code == 200
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) == allowed


def test_a_real_create_answer_feeds_its_links(app, scaikey, doc):
    admin = Callers(scaikey, app.test_client()).admin(new_tenant())
    created = admin.post("/v1/policies", json={"name": "l", "rules": [{"path_pattern": "a/*", "permissions": ["read"]}]})
    link = next(iter(doc["paths"]["/v1/policies"]["post"]["responses"]["201"]["links"].values()))
    pointer = link["parameters"]["policy_id"].split("#/")[1]
    assert admin.get(f"/v1/policies/{created.get_json()[pointer]}").status_code == 200


def test_body_constraints_the_server_enforces_are_declared(doc):
    schemas = doc["components"]["schemas"]
    policy = schemas["PolicyBody"]["properties"]
    assert policy["rules"]["minItems"] == 1 and policy["name"]["maxLength"] == 128
    rule = schemas["RuleBody"]["properties"]
    assert rule["permissions"]["minItems"] == 1 and "admin" in rule["permissions"]["items"]["enum"]
    assert re.fullmatch(rule["path_pattern"]["pattern"], "environments/prod/**")
    binding = schemas["BindingBody"]["properties"]
    assert "dynamic_engine" in binding["identity_type"]["enum"]
    assert re.fullmatch(binding["identity_id"]["pattern"], "dynamic:pg")
    assert not re.fullmatch(binding["identity_id"]["pattern"], "robot:x")
    options = schemas["WriteOptions"]["properties"]["expires_in"]
    assert any(re.fullmatch(alt.get("pattern", "^$"), "90d") for alt in [options, *options.get("anyOf", [])])


@pytest.mark.parametrize("method, url, allowed", [
    ("PUT", "/v1/secrets/app/db:metadata", {"GET", "HEAD", "OPTIONS", "PATCH"}),
    ("DELETE", "/v1/secrets/app/db:versions", {"GET", "HEAD", "OPTIONS"}),
    ("PUT", "/v1/partner/secrets/app/db:restore", {"POST", "OPTIONS"}),
    ("PUT", "/v1/secrets/batch/metadata", {"POST", "OPTIONS"}),     # batch routes: reserved, not secret paths
    ("GET", "/v1/secrets/batch", {"POST", "OPTIONS"}),
])
def test_an_undeclared_method_on_a_colon_route_is_405_with_its_allow(app, scaikey, method, url, allowed):
    admin = Callers(scaikey, app.test_client()).admin(new_tenant())
    resp = admin.call(method, url, json={"data": {}})
    assert resp.status_code == 405 and resp.get_json()["error"]["code"] == "method_not_allowed"
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) == allowed


@pytest.fixture
def admin(app, scaikey):
    from tests.lifecycle_support import LIFECYCLE_SCOPES

    tenant = new_tenant()
    return Callers(scaikey, app.test_client()).user(f"ops@{tenant}.example", tenant, role="tenant_admin",
                                                    scopes=(*LIFECYCLE_SCOPES, "identity:read"))


@pytest.mark.parametrize("url, code", [
    ("/v1/secrets?limit=&limit=5", "invalid_request"),            # given twice
    ("/v1/secrets?limit=", "invalid_request"),                    # empty is not an integer
    ("/v1/secrets?include_deleted=0", "invalid_request"),         # the document says true|false
    ("/v1/partner/secrets?include_partner=AAA", "invalid_request"),
    ("/v1/secrets?expires_within=99999d", "invalid_duration"),
    ("/v1/rotation/due?policy_id=" + "x" * 129, "invalid_request"),
    ("/v1/webhooks/wh_x/deliveries?status=done", "invalid_request"),
    ("/v1/identity/tenants?page=0", "validation_error"),
])
def test_query_parameters_are_checked_against_their_declared_schema(admin, doc, url, code):
    resp = admin.get(url)
    assert resp.status_code in (400, 422) and resp.get_json()["error"]["code"] == code, resp.get_json()


def test_what_the_document_allows_the_server_accepts(admin):
    assert admin.get("/v1/secrets?cursor=").status_code == 200                         # empty: the first page
    assert admin.put("/v1/secrets/fl/a", json={"data": {"k": 1.0}}).status_code == 201
    # a JSON Schema integer may be written 2.0; secret data keeps what was sent
    resp = admin.put("/v1/secrets/fl/a", json={"data": {"k": 1.0}, "options": {"max_versions": 5.0}})
    assert resp.status_code == 200, resp.get_json()
    assert admin.get("/v1/secrets/fl/a").get_json()["data"] == {"k": 1.0}
    destroy = admin.post("/v1/secrets/fl/a:destroy", json={"versions": [1.0]})
    assert destroy.status_code in (200, 204), destroy.get_json()


@pytest.mark.parametrize("url, body", [
    ("/v1/webhooks/wh_x", {"name": None}),
    ("/v1/rotation/policies/rot_x", {"interval": None}),
    ("/v1/secret-policies/sp_x", {"is_active": None}),
    ("/v1/webhooks/wh_x", {}),
])
def test_a_patch_member_is_omitted_not_null_and_an_empty_patch_is_refused(admin, doc, url, body):
    resp = admin.patch(url, json=body)
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "validation_error", resp.get_json()


def test_strings_keys_and_free_form_values_are_declared_nul_free(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["WebhookBody"]["properties"]["name"]["pattern"] == "\\S"
    assert schemas["WebhookBody"]["properties"]["name"]["allOf"] == [{"pattern": "^[^\\u0000]*$"}]
    metadata = next(a for a in schemas["SecretWriteBody"]["properties"]["metadata"]["anyOf"] if a.get("type") == "object")
    assert metadata["propertyNames"] == {"pattern": "^[^\\u0000]*$"}
    assert schemas["SecretWriteBody"]["properties"]["data"].get("propertyNames") is None    # sealed: NUL allowed
    assert "JsonValue" in schemas
    patch = schemas["MetadataPatchBody"]["properties"]["metadata"]                           # dict[str, Any]
    assert patch["additionalProperties"] == {"$ref": "#/components/schemas/JsonValue"}
    account = schemas["AccountBody"]["properties"]["directory_url"]                           # anchored, but `\S`
    assert {"pattern": "^[^\\u0000]*$"} in account["allOf"]
    # a member that may be left out but not sent as null carries no `default: null`
    assert "default" not in schemas["WebhookPatch"]["properties"]["name"]
    assert schemas["WebhookPatch"]["minProperties"] == 1


def test_plugin_names_are_the_installed_ones(doc):
    schemas = doc["components"]["schemas"]
    assert "rfc2136" in schemas["DnsProviderBody"]["properties"]["provider_type"]["enum"]
    assert "postgresql" in schemas["EngineCreateConfig"]["properties"]["plugin"]["enum"]
