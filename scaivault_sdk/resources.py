"""The API's operations, written once for both clients.

Each method builds a `Call`; `@operation` hands it to the owning client, whose `_execute`
returns the result (SyncScaiVaultClient) or a coroutine of it (ScaiVaultClient). `@paginated`
does the same for listings, which become an iterator (or async iterator) over every page.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable
from urllib.parse import quote

from pydantic import BaseModel

from . import models as m
from .calls import Call, checked_path, drop_none, secret_url


JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def parser(model: type[BaseModel]) -> Callable:
    return lambda response: model.model_validate(response.json())


def _json(response) -> Any:
    return response.json() if response.content else None      # 204 No Content


def _batch_result(response) -> m.BatchReadResult:
    body = response.json()
    secrets = {path: {"path": path, **item} for path, item in body.get("secrets", {}).items()}
    return m.BatchReadResult.model_validate({**body, "secrets": secrets})


def _bytes(response) -> bytes:
    return response.content


def operation(build: Callable[..., Call]) -> Callable:
    @functools.wraps(build)
    def method(self: "Namespace", *args: Any, **kwargs: Any):
        return self._client._execute(build(self, *args, **kwargs))
    return method


def paginated(items: str):
    """The decorated method returns (page-call builder taking a cursor); callers get every item."""
    def decorate(build: Callable[..., Callable[[str | None], Call]]) -> Callable:
        @functools.wraps(build)
        def method(self: "Namespace", *args: Any, **kwargs: Any):
            limit = kwargs.pop("max_items", None)
            return self._client._paginate(build(self, *args, **kwargs), items, limit)
        return method
    return decorate


class Namespace:
    def __init__(self, client: Any):
        self._client = client


class SecretsAPI(Namespace):
    """client.secrets: read, write, metadata, list, batch, versions, delete, restore, destroy."""

    @operation
    def read(self, path: str, *, version: int | None = None, partner: bool = False) -> Call[m.Secret]:
        return Call("GET", secret_url(path, partner=partner), parser(m.Secret), params={"version": version})

    @operation
    def write(self, path: str, data: dict[str, Any], *, secret_type: m.SecretType | str | None = None,
              metadata: dict[str, Any] | m.SecretMetadata | None = None, max_versions: int | None = None,
              expires_in: str | None = None, rotation_policy_id: str | None = None, cas: int | None = None,
              partner: bool = False) -> Call[m.SecretInfo]:
        """Write a new version. With `cas` (0 = create only, N = only over version N) it is safe to retry."""
        if isinstance(metadata, BaseModel):
            metadata = metadata.model_dump(exclude_none=True)
        options = drop_none({"max_versions": max_versions, "expires_in": expires_in,
                             "rotation_policy_id": rotation_policy_id, "cas": cas})
        body = drop_none({"data": data, "metadata": metadata,
                          "secret_type": secret_type.value if isinstance(secret_type, m.SecretType) else secret_type})
        if options:
            body["options"] = options
        return Call("PUT", secret_url(path, partner=partner), parser(m.SecretInfo), json=body,
                    idempotent=cas is not None)

    @operation
    def update_metadata(self, path: str, metadata: dict[str, Any] | None = None, *, max_versions: int | None = None,
                        expires_in: str | None = None, rotation_policy_id: str | None = None,
                        partner: bool = False) -> Call[m.SecretInfo]:
        """JSON merge patch of the metadata (a None value removes a key); no new version."""
        body = drop_none({"max_versions": max_versions, "expires_in": expires_in,
                          "rotation_policy_id": rotation_policy_id})
        if metadata is not None:
            body["metadata"] = metadata
        return Call("PATCH", secret_url(path, ":metadata", partner=partner), parser(m.SecretInfo), json=body,
                    idempotent=True)

    @operation
    def read_metadata(self, path: str, *, partner: bool = False) -> Call[m.SecretDetail]:
        return Call("GET", secret_url(path, ":metadata", partner=partner), parser(m.SecretDetail))

    @paginated("secrets")
    def list(self, prefix: str = "", *, recursive: bool = True, page_size: int | None = None,
             tag: str | None = None, owner: str | None = None, q: str | None = None,
             include_deleted: bool = False, expires_within: str | None = None, partner: bool = False):
        """Every secret under `prefix` (all pages); recursive=False lists one level. `max_items=` stops early."""
        url = "/v1/partner/secrets" if partner else "/v1/secrets"
        params = {"prefix": prefix or None, "delimiter": None if recursive else "/", "limit": page_size,
                  "tag": tag, "owner": owner, "q": q, "include_deleted": "true" if include_deleted else None,
                  "expires_within": expires_within}
        return lambda cursor: Call("GET", url, parser(m.SecretPage), params={**params, "cursor": cursor})

    @operation
    def list_page(self, prefix: str = "", *, recursive: bool = True, page_size: int | None = None,
                  cursor: str | None = None, partner: bool = False, **filters: Any) -> Call[m.SecretPage]:
        """One page of a listing, with its `folders` when recursive=False and the `cursor` of the next."""
        url = "/v1/partner/secrets" if partner else "/v1/secrets"
        params = {"prefix": prefix or None, "delimiter": None if recursive else "/", "limit": page_size,
                  "cursor": cursor, **filters}
        return Call("GET", url, parser(m.SecretPage), params=params)

    @paginated("secrets")
    def expiring(self, days: int, *, prefix: str = "", page_size: int | None = None):
        """Secrets expiring within `days` days (already expired ones included)."""
        params = {"prefix": prefix or None, "expires_within": f"{int(days)}d", "limit": page_size}
        return lambda cursor: Call("GET", "/v1/secrets", parser(m.SecretPage), params={**params, "cursor": cursor})

    @operation
    def batch_read(self, paths: Iterable[str], *, version: int | None = None, include_metadata: bool = False,
                   fail_fast: bool = False) -> Call[m.BatchReadResult]:
        options = drop_none({"version": version, "include_metadata": include_metadata or None,
                             "fail_fast": fail_fast or None})
        return Call("POST", "/v1/secrets/batch", _batch_result,
                    json={"paths": list(paths), "options": options}, idempotent=True)

    @operation
    def batch_metadata(self, paths: Iterable[str], *, expand_wildcards: bool = False) -> Call[dict]:
        return Call("POST", "/v1/secrets/batch/metadata", _json, idempotent=True,
                    json={"paths": list(paths), "options": {"expand_wildcards": expand_wildcards}})

    @operation
    def versions(self, path: str, *, partner: bool = False) -> Call[m.VersionList]:
        return Call("GET", secret_url(path, ":versions", partner=partner), parser(m.VersionList))

    @operation
    def delete(self, path: str, *, permanent: bool = False, partner: bool = False) -> Call[m.DeleteResult]:
        """Soft delete (restorable until `recoverable_until`); permanent=True destroys every version."""
        return Call("DELETE", secret_url(path, partner=partner), parser(m.DeleteResult),
                    params={"permanent": "true" if permanent else None}, idempotent=False)

    @operation
    def restore(self, path: str, *, partner: bool = False) -> Call[m.SecretInfo]:
        return Call("POST", secret_url(path, ":restore", partner=partner), parser(m.SecretInfo))

    @operation
    def rotate(self, path: str) -> Call[dict]:
        """Rotate now through the attached rotation policy; the rotation history item (never the value)."""
        return Call("POST", secret_url(path, ":rotate"), _json, idempotent=False)

    @operation
    def generate(self, path: str, *, secret_policy_id: str | None = None) -> Call[m.SecretInfo]:
        """Write a new version generated from the secret's (or the named) secret policy; metadata only."""
        return Call("POST", secret_url(path, ":generate"), parser(m.SecretInfo),
                    json=drop_none({"secret_policy_id": secret_policy_id}), idempotent=False)

    @operation
    def destroy(self, path: str, versions: Iterable[int], *, partner: bool = False) -> Call[m.DestroyResult]:
        """Erase the ciphertext of these versions for good (repeating it is harmless)."""
        return Call("POST", secret_url(path, ":destroy", partner=partner), parser(m.DestroyResult),
                    json={"versions": list(versions)}, idempotent=True)


class PoliciesAPI(Namespace):
    """client.policies: CRUD, bindings and the dry-run test."""

    @paginated("policies")
    def list(self, *, page_size: int | None = None):
        return lambda cursor: Call("GET", "/v1/policies", parser(m.PolicyPage),
                                   params={"limit": page_size, "cursor": cursor})

    @operation
    def get(self, policy_id: str) -> Call[m.Policy]:
        return Call("GET", f"/v1/policies/{_segment(policy_id)}", parser(m.Policy))

    @operation
    def create(self, name: str, rules: list[dict[str, Any] | m.PolicyRule], *, description: str | None = None,
               scope: str | None = None, is_active: bool | None = None) -> Call[m.Policy]:
        body = drop_none({"name": name, "description": description, "rules": _rules(rules), "scope": scope,
                          "is_active": is_active})
        return Call("POST", "/v1/policies", parser(m.Policy), json=body)

    @operation
    def replace(self, policy_id: str, name: str, rules: list[dict[str, Any] | m.PolicyRule], *,
                description: str | None = None, is_active: bool | None = None) -> Call[m.Policy]:
        body = drop_none({"name": name, "description": description, "rules": _rules(rules), "is_active": is_active})
        return Call("PUT", f"/v1/policies/{_segment(policy_id)}", parser(m.Policy), json=body, idempotent=True)

    @operation
    def update(self, policy_id: str, *, name: str | None = None, description: str | None = None,
               rules: list[dict[str, Any] | m.PolicyRule] | None = None, is_active: bool | None = None) -> Call[m.Policy]:
        body = drop_none({"name": name, "description": description, "is_active": is_active,
                          "rules": _rules(rules) if rules is not None else None})
        return Call("PATCH", f"/v1/policies/{_segment(policy_id)}", parser(m.Policy), json=body, idempotent=True)

    @operation
    def delete(self, policy_id: str, *, force: bool = False) -> Call[m.Deleted]:
        return Call("DELETE", f"/v1/policies/{_segment(policy_id)}", parser(m.Deleted),
                    params={"force": "true" if force else None}, idempotent=False)

    @operation
    def bindings(self, policy_id: str) -> Call[list[m.PolicyBinding]]:
        return Call("GET", f"/v1/policies/{_segment(policy_id)}/bindings",
                    lambda r: [m.PolicyBinding.model_validate(b) for b in r.json()["bindings"]])

    @operation
    def bind(self, policy_id: str, identity_type: str, identity_id: str, *,
             expires_at: str | None = None) -> Call[m.PolicyBinding]:
        body = drop_none({"identity_type": identity_type, "identity_id": identity_id, "expires_at": expires_at})
        return Call("POST", f"/v1/policies/{_segment(policy_id)}/bindings", parser(m.PolicyBinding), json=body)

    @operation
    def unbind(self, policy_id: str, binding_id: str) -> Call[m.Deleted]:
        return Call("DELETE", f"/v1/policies/{_segment(policy_id)}/bindings/{_segment(binding_id)}",
                    parser(m.Deleted), idempotent=False)

    @operation
    def test(self, path: str, permission: str, *, identity_id: str | None = None, groups: list[str] | None = None,
             partner_secret: bool = False, source_ip: str | None = None,
             mfa_verified: bool = False) -> Call[m.PolicyTestResult]:
        """Would this identity get `permission` on `path`, and by which rule (a dry run, not audited)."""
        body = drop_none({"path": path, "permission": permission, "identity_id": identity_id, "groups": groups,
                          "partner_secret": partner_secret or None,
                          "context": drop_none({"source_ip": source_ip, "mfa_verified": mfa_verified or None})})
        return Call("POST", "/v1/policies/test", parser(m.PolicyTestResult), json=body, idempotent=True)


class TokensAPI(Namespace):
    """client.tokens: the caller's personal access tokens."""

    @operation
    def create(self, name: str, scopes: list[str], *, expires_in: str | int | None = None) -> Call[m.CreatedToken]:
        return Call("POST", "/v1/auth/tokens", parser(m.CreatedToken),
                    json=drop_none({"name": name, "scopes": list(scopes), "expires_in": expires_in}))

    @operation
    def list(self) -> Call[list[m.Token]]:
        return Call("GET", "/v1/auth/tokens", lambda r: [m.Token.model_validate(t) for t in r.json()["tokens"]])

    @operation
    def revoke(self, token_id: str) -> Call[m.Token]:
        return Call("DELETE", f"/v1/auth/tokens/{_segment(token_id)}", parser(m.Token), idempotent=True)


class AuthAPI(Namespace):
    @operation
    def whoami(self) -> Call[m.Whoami]:
        return Call("GET", "/v1/auth/whoami", parser(m.Whoami))

    @operation
    def introspect(self, token: str) -> Call[dict]:
        return Call("POST", "/v1/auth/introspect", _json, json={"token": token}, idempotent=True)

    @operation
    def exchange(self, subject_token: str, *, scopes: list[str] | None = None, rule: str | None = None,
                 tenant_id: str | None = None) -> Call[m.ExchangedToken]:
        """Swap a foreign workload JWT for a short-lived ScaiVault token (no bearer needed; trust rules decide)."""
        body = drop_none({"subject_token": subject_token, "subject_token_type": JWT_TOKEN_TYPE,
                          "scopes": list(scopes) if scopes else None, "rule": rule, "tenant_id": tenant_id})
        return Call("POST", "/v1/auth/exchange", parser(m.ExchangedToken), json=body)

    @operation
    def list_trust_rules(self) -> Call[list[dict]]:
        return Call("GET", "/v1/auth/trust", lambda r: r.json()["rules"])

    @operation
    def create_trust_rule(self, name: str, *, issuer: str, audience: str, identity: str, max_scopes: list[str],
                          conditions: dict[str, str] | None = None, jwks_url: str | None = None,
                          ttl: str | None = None) -> Call[dict]:
        """Which foreign tokens may be exchanged (issuer, audience, claim conditions) and for what identity."""
        body = drop_none({"name": name, "issuer": issuer, "audience": audience, "identity": identity,
                          "max_scopes": list(max_scopes), "conditions": conditions, "jwks_url": jwks_url, "ttl": ttl})
        return Call("POST", "/v1/auth/trust", _json, json=body)

    @operation
    def delete_trust_rule(self, rule_id: str) -> Call[dict]:
        return Call("DELETE", f"/v1/auth/trust/{_segment(rule_id)}", _json, idempotent=False)


class AuditAPI(Namespace):
    """client.audit: queries (newest first), trails, summary, chain verification, exports."""

    @paginated("logs")
    def query(self, *, since: str | None = None, until: str | None = None, action: str | list[str] | None = None,
              identity_id: str | None = None, identity_type: str | None = None, path_prefix: str | None = None,
              success: bool | None = None, source_ip: str | None = None, request_id: str | None = None,
              page_size: int | None = None):
        params = _audit_filters(since, until, action, identity_id, identity_type, path_prefix, success, source_ip,
                                request_id)
        params["limit"] = page_size
        return lambda cursor: Call("GET", "/v1/audit/logs", parser(m.AuditPage), params={**params, "cursor": cursor})

    @operation
    def secret_trail(self, path: str, *, limit: int | None = None) -> Call[dict]:
        return Call("GET", "/v1/audit/secrets/" + secret_url(path)[len("/v1/secrets/"):], _json,
                    params={"limit": limit})

    @operation
    def identity_trail(self, identity_id: str, *, limit: int | None = None) -> Call[dict]:
        return Call("GET", f"/v1/audit/identities/{_segment(identity_id)}", _json, params={"limit": limit})

    @operation
    def summary(self, *, since: str | None = None, until: str | None = None) -> Call[dict]:
        return Call("GET", "/v1/audit/summary", _json, params={"from": since, "to": until})

    @operation
    def verify(self, *, since: str | None = None, until: str | None = None) -> Call[dict]:
        return Call("GET", "/v1/audit/verify", _json, params={"from": since, "to": until})

    @operation
    def export(self, *, since: str | None = None, until: str | None = None, format: str = "jsonl",
               filters: dict[str, Any] | None = None) -> Call[m.AuditExport]:
        """Start an export job (poll `get_export`, then `download_export_file`)."""
        body = drop_none({"from": since, "to": until, "format": format, "filters": filters or None})
        return Call("POST", "/v1/audit/export", parser(m.AuditExport), json=body)

    @operation
    def exports(self) -> Call[list[m.AuditExport]]:
        return Call("GET", "/v1/audit/exports",
                    lambda r: [m.AuditExport.model_validate(e) for e in r.json()["exports"]])

    @operation
    def get_export(self, export_id: str) -> Call[m.AuditExport]:
        return Call("GET", f"/v1/audit/exports/{_segment(export_id)}", parser(m.AuditExport))

    @operation
    def download_export_file(self, export_id: str, number: int = 1) -> Call[bytes]:
        return Call("GET", f"/v1/audit/exports/{_segment(export_id)}/files/{int(number)}", _bytes)


class DynamicAPI(Namespace):
    """client.dynamic: database engines, their roles, and credentials generated under a lease."""

    @operation
    def list_engines(self) -> Call[list[m.DynamicEngine]]:
        return Call("GET", "/v1/dynamic/engines",
                    lambda r: [m.DynamicEngine.model_validate(e) for e in r.json()["engines"]])

    @operation
    def get_engine(self, name: str) -> Call[m.DynamicEngine]:
        return Call("GET", f"/v1/dynamic/engines/{_segment(name)}", parser(m.DynamicEngine))

    @operation
    def create_engine(self, name: str, *, plugin: str, connection_url: str, root_credentials_path: str,
                      type: str = "database", default_ttl: str | int | None = None,
                      max_ttl: str | int | None = None) -> Call[m.DynamicEngine]:
        """The server reads the root credentials secret (the caller needs read on it) and tests the connection."""
        body = drop_none({"name": name, "type": type, "default_ttl": default_ttl, "max_ttl": max_ttl,
                          "config": {"plugin": plugin, "connection_url": connection_url,
                                     "root_credentials_path": root_credentials_path}})
        return Call("POST", "/v1/dynamic/engines", parser(m.DynamicEngine), json=body)

    @operation
    def update_engine(self, name: str, *, config: dict[str, Any] | None = None, default_ttl: str | int | None = None,
                      max_ttl: str | int | None = None) -> Call[m.DynamicEngine]:
        body = drop_none({"config": config, "default_ttl": default_ttl, "max_ttl": max_ttl})
        return Call("PATCH", f"/v1/dynamic/engines/{_segment(name)}", parser(m.DynamicEngine), json=body,
                    idempotent=True)

    @operation
    def delete_engine(self, name: str, *, force: bool = False) -> Call[dict]:
        return Call("DELETE", f"/v1/dynamic/engines/{_segment(name)}", _json,
                    params={"force": "true" if force else None}, idempotent=False)

    @operation
    def engine_health(self, name: str) -> Call[dict]:
        return Call("GET", f"/v1/dynamic/engines/{_segment(name)}/health", _json)

    @operation
    def rotate_root(self, name: str) -> Call[dict]:
        return Call("POST", f"/v1/dynamic/engines/{_segment(name)}/rotate-root", _json)

    @operation
    def list_roles(self, engine: str) -> Call[list[m.DynamicRole]]:
        return Call("GET", f"/v1/dynamic/engines/{_segment(engine)}/roles",
                    lambda r: [m.DynamicRole.model_validate(x) for x in r.json()["roles"]])

    @operation
    def get_role(self, engine: str, role: str) -> Call[m.DynamicRole]:
        return Call("GET", f"/v1/dynamic/engines/{_segment(engine)}/roles/{_segment(role)}", parser(m.DynamicRole))

    @operation
    def put_role(self, engine: str, role: str, creation_statements: list[str], *,
                 revocation_statements: list[str] | None = None, renew_statements: list[str] | None = None,
                 default_ttl: str | int | None = None, max_ttl: str | int | None = None) -> Call[m.DynamicRole]:
        """Create or replace a role (a replace is idempotent)."""
        body = drop_none({"creation_statements": list(creation_statements),
                          "revocation_statements": revocation_statements, "renew_statements": renew_statements,
                          "default_ttl": default_ttl, "max_ttl": max_ttl})
        return Call("PUT", f"/v1/dynamic/engines/{_segment(engine)}/roles/{_segment(role)}", parser(m.DynamicRole),
                    json=body, idempotent=True)

    @operation
    def delete_role(self, engine: str, role: str) -> Call[dict]:
        return Call("DELETE", f"/v1/dynamic/engines/{_segment(engine)}/roles/{_segment(role)}", _json,
                    idempotent=False)

    @operation
    def generate(self, engine: str, role: str, *, ttl: str | int | None = None) -> Call[m.DynamicCredentials]:
        """A new database user under a lease. Never repeated after a broken connection (it may exist already)."""
        return Call("POST", f"/v1/dynamic/engines/{_segment(engine)}/creds/{_segment(role)}",
                    parser(m.DynamicCredentials), json=drop_none({"ttl": ttl}), idempotent=False)


class LeasesAPI(Namespace):
    """client.leases: list, read, renew and revoke dynamic-credential leases."""

    @paginated("leases")
    def list(self, *, engine: str | None = None, role: str | None = None, identity: str | None = None,
             state: str | None = None, page_size: int | None = None):
        params = {"engine": engine, "role": role, "identity": identity, "state": state, "limit": page_size}
        return lambda cursor: Call("GET", "/v1/leases", parser(m.LeasePage), params={**params, "cursor": cursor})

    @operation
    def get(self, lease_id: str) -> Call[m.Lease]:
        return Call("GET", f"/v1/leases/{_lease(lease_id)}", parser(m.Lease))

    @operation
    def renew(self, lease_id: str, *, increment: str | int | None = None) -> Call[m.Lease]:
        """Extend to now + increment (capped by the lease's max TTL); repeating it lands in the same place."""
        return Call("POST", f"/v1/leases/{_lease(lease_id)}/renew", parser(m.Lease),
                    json=drop_none({"increment": increment}), idempotent=True)

    @operation
    def revoke(self, lease_id: str) -> Call[m.Lease]:
        """Revoke now; state `revoked`, or `revoke_failed` with a retry queued by the server."""
        return Call("POST", f"/v1/leases/{_lease(lease_id)}/revoke", parser(m.Lease), idempotent=True)

    @operation
    def revoke_prefix(self, prefix: str) -> Call[dict]:
        return Call("POST", "/v1/leases/revoke-prefix", _json, json={"prefix": prefix}, idempotent=True)


class PkiAPI(Namespace):
    """client.pki: certificate authorities, roles, issue and sign, the certificate inventory, revocation."""

    @operation
    def create_ca(self, name: str, common_name: str, *, ca_type: str = "root", parent_ca_id: str | None = None,
                  key_type: str | None = None, key_size: int | None = None,
                  ttl: str | None = None, key_storage: str | None = None) -> Call[m.CertificateAuthority]:
        """key_storage: "sealed" (default) or "hsm" (key generated in the HSM; needs KMS_PROVIDER=pkcs11)."""
        body = drop_none({"name": name, "common_name": common_name, "ca_type": ca_type, "parent_ca_id": parent_ca_id,
                          "key_type": key_type, "key_size": key_size, "ttl": ttl, "key_storage": key_storage})
        return Call("POST", "/v1/pki/ca", parser(m.CertificateAuthority), json=body)

    @operation
    def list_cas(self) -> Call[list[m.CertificateAuthority]]:
        return Call("GET", "/v1/pki/ca", lambda r: [m.CertificateAuthority.model_validate(c) for c in r.json()["cas"]])

    @operation
    def get_ca(self, ca_id: str) -> Call[m.CertificateAuthority]:
        return Call("GET", f"/v1/pki/ca/{_segment(ca_id)}", parser(m.CertificateAuthority))

    @operation
    def ca_certificate(self, ca_id: str) -> Call[str]:
        """The CA certificate, PEM (served without authentication to relying parties)."""
        return Call("GET", f"/v1/pki/ca/{_segment(ca_id)}/certificate", lambda r: r.text)

    @operation
    def create_role(self, name: str, ca_id: str, *, allowed_domains: list[str] | None = None,
                    **options: Any) -> Call[m.PkiRole]:
        """options: allow_subdomains, allow_wildcards, allow_ip_sans, key_type, key_bits, ttl, max_ttl, ..."""
        body = drop_none({"name": name, "ca_id": ca_id, "allowed_domains": allowed_domains, **options})
        return Call("POST", "/v1/pki/roles", parser(m.PkiRole), json=body)

    @operation
    def list_roles(self) -> Call[list[m.PkiRole]]:
        return Call("GET", "/v1/pki/roles", lambda r: [m.PkiRole.model_validate(x) for x in r.json()["roles"]])

    @operation
    def get_role(self, name: str) -> Call[m.PkiRole]:
        return Call("GET", f"/v1/pki/roles/{_segment(name)}", parser(m.PkiRole))

    @operation
    def delete_role(self, name: str) -> Call[dict]:
        """The server answers 204; the SDK answers {"name", "deleted": True} like the other deletes."""
        return Call("DELETE", f"/v1/pki/roles/{_segment(name)}", lambda r: {"name": name, "deleted": True},
                    idempotent=False)

    @operation
    def issue(self, role: str, common_name: str | None = None, *, alt_names: list[str] | None = None,
              ip_sans: list[str] | None = None, ttl: str | None = None, secret_path: str | None = None,
              auto_renew: bool = False) -> Call[m.IssuedCertificate]:
        """A certificate and a new private key (returned once); never repeated after a broken connection."""
        body = drop_none({"common_name": common_name, "alt_names": alt_names, "ip_sans": ip_sans, "ttl": ttl,
                          "secret_path": secret_path, "auto_renew": auto_renew or None})
        return Call("POST", f"/v1/pki/issue/{_segment(role)}", parser(m.IssuedCertificate), json=body)

    @operation
    def sign(self, role: str, csr: str, *, common_name: str | None = None, alt_names: list[str] | None = None,
             ttl: str | None = None) -> Call[m.IssuedCertificate]:
        body = drop_none({"csr": csr, "common_name": common_name, "alt_names": alt_names, "ttl": ttl})
        return Call("POST", f"/v1/pki/sign/{_segment(role)}", parser(m.IssuedCertificate), json=body)

    @paginated("certificates")
    def certificates(self, *, ca_id: str | None = None, expiring_within: str | None = None,
                     include_revoked: bool = False, page_size: int | None = None):
        params = {"ca_id": ca_id, "expiring_within": expiring_within,
                  "include_revoked": "true" if include_revoked else None, "limit": page_size}
        return lambda cursor: Call("GET", "/v1/pki/certificates", parser(m.CertificatePage),
                                   params={**params, "cursor": cursor})

    @operation
    def get_certificate(self, cert_id: str) -> Call[m.CertificateRecord]:
        return Call("GET", f"/v1/pki/certificates/{_segment(cert_id)}", parser(m.CertificateRecord))

    @operation
    def revoke_certificate(self, cert_id: str, *, reason: str | None = None) -> Call[m.CertificateRecord]:
        return Call("POST", f"/v1/pki/certificates/{_segment(cert_id)}/revoke", parser(m.CertificateRecord),
                    json=drop_none({"reason": reason}), idempotent=True)


class RotationAPI(Namespace):
    """client.rotation: secret policies (value recipes) and rotation policies (schedules), rotate now."""

    @paginated("secret_policies")
    def secret_policies(self, *, page_size: int | None = None):
        return lambda cursor: Call("GET", "/v1/secret-policies", parser(m.SecretPolicyPage),
                                   params={"limit": page_size, "cursor": cursor})

    @operation
    def create_secret_policy(self, name: str, fields: list[dict[str, Any]], *, description: str | None = None,
                             policy_type: str | None = None) -> Call[m.SecretPolicy]:
        body = drop_none({"name": name, "fields": fields, "description": description, "policy_type": policy_type})
        return Call("POST", "/v1/secret-policies", parser(m.SecretPolicy), json=body)

    @operation
    def delete_secret_policy(self, policy_id: str, *, force: bool = False) -> Call[Any]:
        return Call("DELETE", f"/v1/secret-policies/{_segment(policy_id)}", _json,
                    params={"force": "true" if force else None}, idempotent=False)

    @paginated("data")
    def policies(self, *, active_only: bool = False, page_size: int | None = None):
        params = {"active_only": "true" if active_only else None, "limit": page_size}
        return lambda cursor: Call("GET", "/v1/rotation/policies", parser(m.DataPage),
                                   params={**params, "cursor": cursor})

    @operation
    def get_policy(self, policy_id: str) -> Call[m.RotationPolicy]:
        return Call("GET", f"/v1/rotation/policies/{_segment(policy_id)}", parser(m.RotationPolicy))

    @operation
    def create_policy(self, name: str, interval: str, **options: Any) -> Call[m.RotationPolicy]:
        """options: description, grace_period, warn_before, auto_generate, secret_policy_id, webhook_ids."""
        return Call("POST", "/v1/rotation/policies", parser(m.RotationPolicy),
                    json=drop_none({"name": name, "interval": interval, **options}))

    @operation
    def delete_policy(self, policy_id: str) -> Call[Any]:
        return Call("DELETE", f"/v1/rotation/policies/{_segment(policy_id)}", _json, idempotent=False)

    @operation
    def attach(self, policy_id: str, secret_path: str) -> Call[dict]:
        return Call("POST", f"/v1/rotation/policies/{_segment(policy_id)}/secrets", _json,
                    json={"secret_path": checked_path(secret_path)})

    @operation
    def detach(self, policy_id: str, secret_path: str) -> Call[Any]:
        return Call("DELETE", f"/v1/rotation/policies/{_segment(policy_id)}/secrets/{_lease(secret_path)}", _json,
                    idempotent=False)

    @operation
    def rotate(self, policy_id: str, secret_paths: list[str] | None = None) -> Call[list[dict]]:
        """Rotate the policy's secrets (or `secret_paths`) now; one history item per secret."""
        return Call("POST", f"/v1/rotation/policies/{_segment(policy_id)}/rotate", _json,
                    json=drop_none({"secret_paths": secret_paths}))

    @operation
    def history(self, policy_id: str, *, status: str | None = None, limit: int | None = None) -> Call[dict]:
        return Call("GET", f"/v1/rotation/policies/{_segment(policy_id)}/history", _json,
                    params={"status": status, "limit": limit})


class WebhooksAPI(Namespace):
    """client.webhooks: signed outbound event deliveries (admins)."""

    @paginated("webhooks")
    def list(self, *, page_size: int | None = None):
        return lambda cursor: Call("GET", "/v1/webhooks", parser(m.WebhookPage),
                                   params={"limit": page_size, "cursor": cursor})

    @operation
    def get(self, webhook_id: str) -> Call[m.Webhook]:
        return Call("GET", f"/v1/webhooks/{_segment(webhook_id)}", parser(m.Webhook))

    @operation
    def create(self, name: str, url: str, secret: str, events: list[str], *, filters: dict[str, Any] | None = None,
               enabled: bool | None = None) -> Call[m.Webhook]:
        """`secret` signs the deliveries; it is write-only (never returned)."""
        body = drop_none({"name": name, "url": url, "secret": secret, "events": list(events), "filters": filters,
                          "enabled": enabled})
        return Call("POST", "/v1/webhooks", parser(m.Webhook), json=body)

    @operation
    def update(self, webhook_id: str, **fields: Any) -> Call[m.Webhook]:
        return Call("PATCH", f"/v1/webhooks/{_segment(webhook_id)}", parser(m.Webhook), json=drop_none(fields),
                    idempotent=True)

    @operation
    def delete(self, webhook_id: str) -> Call[Any]:
        return Call("DELETE", f"/v1/webhooks/{_segment(webhook_id)}", _json, idempotent=False)

    @operation
    def test(self, webhook_id: str) -> Call[dict]:
        return Call("POST", f"/v1/webhooks/{_segment(webhook_id)}/test", _json)

    @operation
    def deliveries(self, webhook_id: str, *, status: str | None = None, limit: int | None = None) -> Call[dict]:
        return Call("GET", f"/v1/webhooks/{_segment(webhook_id)}/deliveries", _json,
                    params={"status": status, "limit": limit})

    @operation
    def redeliver(self, webhook_id: str, delivery_id: str) -> Call[dict]:
        return Call("POST", f"/v1/webhooks/{_segment(webhook_id)}/deliveries/{_segment(delivery_id)}/redeliver", _json)


class SystemAPI(Namespace):
    @operation
    def health(self) -> Call[dict]:
        return Call("GET", "/v1/health", _json)

    @operation
    def version(self) -> Call[dict]:
        return Call("GET", "/v1/version", _json)


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _lease(lease_id: str) -> str:
    """Lease ids are `<engine>/<role>/<id>`: each segment encoded, dot segments refused (see checked_path)."""
    return quote(checked_path(lease_id), safe="/")


def _rules(rules: list[dict[str, Any] | m.PolicyRule]) -> list[dict[str, Any]]:
    return [r.model_dump(exclude_none=True) if isinstance(r, BaseModel) else dict(r) for r in rules]


def _audit_filters(since, until, action, identity_id, identity_type, path_prefix, success, source_ip,
                   request_id) -> dict[str, Any]:
    if isinstance(action, (list, tuple)):
        action = ",".join(action)
    return {"from": since, "to": until, "action": action, "identity_id": identity_id,
            "identity_type": identity_type, "path_prefix": path_prefix,
            "success": None if success is None else ("true" if success else "false"),
            "source_ip": source_ip, "request_id": request_id}
