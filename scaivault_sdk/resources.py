"""The API's operations, written once for both clients.

Each method builds a `Call`; `@operation` hands it to the owning client, whose `_execute`
returns the result (SyncScaiVaultClient) or a coroutine of it (ScaiVaultClient). `@paginated`
does the same for listings, which become an iterator (or async iterator) over every page.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

from pydantic import BaseModel

from . import models as m
from .calls import Call, drop_none, secret_url


def parser(model: type[BaseModel]) -> Callable:
    return lambda response: model.model_validate(response.json())


def _json(response) -> Any:
    return response.json()


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


class SystemAPI(Namespace):
    @operation
    def health(self) -> Call[dict]:
        return Call("GET", "/v1/health", _json)

    @operation
    def version(self) -> Call[dict]:
        return Call("GET", "/v1/version", _json)


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


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
