"""/v1/pki: CAs, roles, issue and sign, certificate inventory and revocation, CA certificate and CRL.

Authorisation (docs/decisions.md, PKI): the pipeline checks the scope (pki:admin for CAs,
roles and revocation; pki:issue for issue and sign), then `_authorize` asks the policies for
a permission on the object's PKI path (pki/ca/<name>, pki/roles/<name>, pki/issue/<role>,
pki/sign/<role>, pki/<ca name>/<serial> for an issued certificate). The CA certificate and
CRL answer anonymously: relying parties fetch them without a token.
"""
from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .. import pagination
from ..config import parse_duration
from ..errors import ScaiVaultError, ValidationFailed
from ..pki import x509 as px
from ..services.pki import RESERVED_CA_NAMES
from ..services.pki import _NAME_RE as PKI_NAME_RE
from ..services.pki import (CaRequest, IssueRequest, ca_policy_path, certificate_policy_path,
                            role_policy_path)
from .auditing import entry_for_request
from .http import bool_arg, runtime
from .authorization import permission, require_grant
from .pipeline import endpoint
from .pki_access import actor, audit_read, owner, require_any_scope, visible

bp = Blueprint("pki", __name__)

PEM_MAX = 64 * 1024


# ------------------------------------------------------------------ bodies
def _not_reserved(name: str) -> str:
    if name in RESERVED_CA_NAMES:
        raise ValueError(f"{name!r} is reserved (it names a PKI path)")
    return name


CaName = Annotated[str, Field(pattern=PKI_NAME_RE.pattern, description="1-64 of a-z 0-9 _ - (starting with a letter "
                                                                       "or digit); not a PKI path word",
                              json_schema_extra={"not": {"enum": sorted(RESERVED_CA_NAMES)}}),
                   AfterValidator(_not_reserved)]
KeySize = Literal[256, 384, 2048, 4096]
# a CA lives at least 1h: 3600..999999s, 60..99999m, 1..99999h, 1..36500d, 1..5214w
CaTtl = Annotated[str, Field(pattern=r"^(([4-9][0-9]{3}|3[6-9][0-9]{2}|[1-9][0-9]{4,5})s|([6-9][0-9]|[1-9][0-9]{2,4})m"
                                     r"|[1-9][0-9]{0,4}h|([1-9][0-9]{0,3}|[12][0-9]{4}|3[0-5][0-9]{3}|36[0-4][0-9]{2}|36500)d"
                                     r"|([1-9][0-9]{0,2}|[1-4][0-9]{3}|5[01][0-9]{2}|520[0-9]|521[0-4])w)$")]


class CaBody(BaseModel):
    # rsa keys are 2048 or 4096 bits, ec keys 256 or 384 (key_bits is an alias of key_size)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
        {"if": {"properties": {"key_type": {"const": "ec"}}, "required": ["key_type"]},
         "then": {"properties": {"key_size": {"enum": [256, 384, None]}, "key_bits": {"enum": [256, 384, None]}}},
         "else": {"properties": {"key_size": {"enum": [2048, 4096, None]}, "key_bits": {"enum": [2048, 4096, None]}}}},
        {"if": {"properties": {"ca_type": {"const": "root"}}, "required": ["ca_type"]},
         "then": {"properties": {"parent_ca_id": {"type": "null"}}}}]})
    field_codes: ClassVar[dict[str, str]] = {"ttl": "invalid_duration"}
    name: CaName
    common_name: str = Field(min_length=1, max_length=64)
    ca_type: Literal["root", "intermediate"] = Field(description="root | intermediate (no parent_ca_id: a CSR for an "
                                                                 "outside root)")
    parent_ca_id: str | None = Field(default=None, max_length=64)
    key_type: Literal["rsa", "ec"] = "rsa"
    key_size: KeySize | None = Field(default=None, description="rsa 2048|4096, ec 256|384")
    key_bits: KeySize | None = Field(default=None, description="alias of key_size")
    ttl: CaTtl | None = Field(default=None, description="lifetime, e.g. 87600h; else validity_days")
    validity_days: int | None = Field(default=None, ge=1, le=36500)
    key_storage: Literal["sealed", "hsm"] = Field(default="sealed", description="sealed (by the key hierarchy) | hsm "
                                                  "(generated inside the HSM, non-extractable; needs KMS_PROVIDER=pkcs11)")

    @model_validator(mode="after")
    def _key_shape(self) -> "CaBody":
        allowed = (256, 384) if self.key_type == "ec" else (2048, 4096)
        for name in ("key_size", "key_bits"):
            if getattr(self, name) is not None and getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {self.key_type} keys are {' or '.join(map(str, allowed))} bits")
        if self.ca_type == "root" and self.parent_ca_id is not None:
            raise ValueError("a root has no parent_ca_id")
        return self


class CaImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CaName
    certificate: str = Field(max_length=PEM_MAX)
    private_key: str = Field(max_length=PEM_MAX)
    ca_chain: list[str] | None = Field(default=None, description="issuers above the CA, nearest first")


class CaCertificateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    certificate: str = Field(max_length=PEM_MAX, description="the certificate the outside root signed")
    ca_chain: list[str] | None = Field(default=None, description="issuers above it, nearest first")


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, description="RFC 5280 reason, e.g. key_compromise, superseded")


class RoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default=None, pattern=PKI_NAME_RE.pattern)                               # type: ignore[assignment]
    ca_id: str | None = Field(default=None, max_length=64)
    allowed_domains: list[str] | None = None
    allow_subdomains: bool | None = None
    allow_wildcards: bool | None = None
    allow_bare_domains: bool | None = None
    allow_ip_sans: bool | None = None
    allow_any_name: bool | None = None
    key_type: str | None = None
    key_bits: int | None = None
    max_ttl: str | None = None
    ttl: str | None = None
    server_flag: bool | None = None
    client_flag: bool | None = None
    require_cn: bool | None = None
    store_private_keys: bool | None = None


class RoleCreate(RoleBody):
    name: str = Field(pattern=PKI_NAME_RE.pattern)
    ca_id: str = Field(min_length=1, max_length=64, description="the CA that signs for this role")


class IssueBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    common_name: str | None = Field(default=None, max_length=253)
    alt_names: list[str] = Field(default_factory=list, max_length=100)
    ip_sans: list[str] = Field(default_factory=list, max_length=100)
    ttl: str | None = None
    secret_path: str | None = Field(default=None, max_length=512)
    auto_renew: bool = False


class SignBody(IssueBody):
    csr: str = Field(max_length=PEM_MAX, description="PEM PKCS#10 request")


# ------------------------------------------------------------------ CAs
@bp.post("/v1/pki/ca")
@endpoint("pki:admin", scope="pki:admin", body=CaBody, summary="Create a root or intermediate CA", status=201,
          authorize=permission("write", each=True))
def create_ca():
    body: CaBody = g.body
    require_grant(ca_policy_path(body.name), "write")
    req = CaRequest(name=body.name, common_name=body.common_name, ca_type=body.ca_type, parent_ca_id=body.parent_ca_id,
                    key_type=body.key_type, key_size=body.key_size or body.key_bits, ttl=body.ttl,
                    validity_days=body.validity_days, key_storage=body.key_storage)
    return jsonify(runtime().pki.create_ca(owner(), req, actor(), entry_for_request)), 201


@bp.post("/v1/pki/ca/import")
@endpoint("pki:admin", scope="pki:admin", body=CaImportBody, summary="Import an existing CA certificate and key",
          status=201, authorize=permission("write", each=True))
def import_ca():
    body: CaImportBody = g.body
    require_grant(ca_policy_path(body.name), "write")
    return jsonify(runtime().pki.import_ca(owner(), body.name, body.certificate, body.private_key, body.ca_chain,
                                           actor(), entry_for_request)), 201


@bp.get("/v1/pki/ca")
@endpoint("pki:admin", scope="pki:admin", summary="List the tenant's CAs", query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"}, authorize=permission("list", each=True))
def list_cas():
    cas = runtime().pki.list_cas(owner(), visible("list"))
    audit_read("pki/ca", listed=len(cas))
    return jsonify(pagination.paginate("cas", cas, request.args.get("limit"), request.args.get("cursor")))


def _ca_for(ca_id: str, permission: str) -> dict:
    row = runtime().pki.get_ca(owner(), ca_id)
    require_grant(ca_policy_path(row["name"]), permission)
    return row


@bp.get("/v1/pki/ca/<ca_id>")
@endpoint("pki:admin", scope="pki:admin", summary="One CA (a pending intermediate shows its CSR)",
          authorize=permission("read", each=True))
def get_ca(ca_id: str):
    row = _ca_for(ca_id, "read")
    audit_read(ca_policy_path(row["name"]), ca_id=row["id"])
    return jsonify(runtime().pki.ca_view(row))


@bp.post("/v1/pki/ca/<ca_id>/certificate")
@endpoint("pki:admin", scope="pki:admin", body=CaCertificateBody,
          summary="Install the certificate an outside root signed for a pending intermediate",
          authorize=permission("write", each=True))
def install_ca_certificate(ca_id: str):
    row = _ca_for(ca_id, "write")
    body: CaCertificateBody = g.body
    return jsonify(runtime().pki.install_ca_certificate(owner(), row["id"], body.certificate, body.ca_chain,
                                                        actor(), entry_for_request))


@bp.post("/v1/pki/ca/<ca_id>/revoke")
@endpoint("pki:admin", scope="pki:admin", body=RevokeBody,
          summary="Revoke a CA, the CAs below it and every certificate they issued",
          authorize=permission("write", each=True))
def revoke_ca(ca_id: str):
    row = _ca_for(ca_id, "write")
    return jsonify(runtime().pki.revoke_ca(owner(), row["id"], g.body.reason, actor(), entry_for_request))


@bp.post("/v1/pki/ca/<ca_id>/crl")
@endpoint("pki:admin", scope="pki:admin", summary="Regenerate the CA's CRL now",
          authorize=permission("write", each=True))
def regenerate_crl(ca_id: str):
    row = _ca_for(ca_id, "write")
    return jsonify(runtime().pki.regenerate_now(owner(), row["id"], entry_for_request))


def _wants_der() -> bool:
    accept = request.accept_mimetypes
    return accept["application/pkix-cert"] > accept["application/x-pem-file"] and \
        "application/pkix-cert" in request.headers.get("Accept", "")


@bp.get("/v1/pki/ca/<ca_id>/certificate")
@endpoint("pki:public", authenticated=False, tenant=False, produces=("application/x-pem-file", "application/pkix-cert"),
          summary="The CA certificate, anonymously: PEM, or DER with Accept: application/pkix-cert")
def ca_certificate(ca_id: str):
    row = runtime().pki.public_ca(ca_id)
    if _wants_der():
        return Response(px.cert_der(row["certificate_pem"]), mimetype="application/pkix-cert")
    if request.args.get("chain") in ("1", "true"):
        return Response(row["certificate_pem"] + (row["chain_pem"] or ""), mimetype="application/x-pem-file")
    return Response(row["certificate_pem"], mimetype="application/x-pem-file")


@bp.get("/v1/pki/ca/<ca_id>/crl")
@endpoint("pki:public", authenticated=False, tenant=False,
          summary="The CA's current CRL, anonymously: DER, or PEM with ?format=pem",
          produces=("application/pkix-crl", "application/x-pem-file"),
          query={"format": "pem for PEM; DER otherwise"})
def ca_crl(ca_id: str):
    der = runtime().pki.crl_der(ca_id)
    fmt = request.args.get("format", "der").lower()
    if fmt == "pem":
        return Response(px.crl_pem(der), mimetype="application/x-pem-file")
    if fmt != "der":
        raise ScaiVaultError("invalid_request", "format must be der or pem")
    return Response(der, mimetype="application/pkix-crl")


# ------------------------------------------------------------------ roles
@bp.post("/v1/pki/roles")
@endpoint("pki:admin", scope="pki:admin", body=RoleCreate, summary="Create a PKI role", status=201,
          authorize=permission("write", each=True))
def create_role():
    body = g.body.model_dump(exclude_none=True)
    if not body.get("name"):
        raise ValidationFailed({"name": "required"})
    require_grant(role_policy_path(body["name"]), "write")
    return jsonify(runtime().pki.create_role(owner(), body, entry_for_request)), 201


@bp.get("/v1/pki/roles")
@endpoint("pki:admin", scope="pki:admin", summary="List PKI roles", query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"}, authorize=permission("list", each=True))
def list_roles():
    roles = runtime().pki.list_roles(owner(), visible("list"))
    audit_read("pki/roles", listed=len(roles))
    return jsonify(pagination.paginate("roles", roles, request.args.get("limit"), request.args.get("cursor")))


@bp.get("/v1/pki/roles/<name>")
@endpoint("pki:admin", scope="pki:admin", summary="One PKI role", authorize=permission("read", each=True))
def get_role(name: str):
    require_grant(role_policy_path(name[:64]), "read")
    view = runtime().pki.get_role(owner(), name)
    audit_read(role_policy_path(view["name"]))
    return jsonify(view)


@bp.patch("/v1/pki/roles/<name>")
@endpoint("pki:admin", scope="pki:admin", body=RoleBody, summary="Update a PKI role (fields given only)",
          authorize=permission("write", each=True))
def update_role(name: str):
    require_grant(role_policy_path(name[:64]), "write")
    patch = g.body.model_dump(exclude_unset=True)
    patch.pop("name", None)
    return jsonify(runtime().pki.update_role(owner(), name, patch, entry_for_request))


@bp.delete("/v1/pki/roles/<name>")
@endpoint("pki:admin", scope="pki:admin", summary="Delete a PKI role (issued certificates stay valid)", status=204,
          authorize=permission("delete", each=True))
def delete_role(name: str):
    require_grant(role_policy_path(name[:64]), "delete")
    runtime().pki.delete_role(owner(), name, entry_for_request)
    return Response(status=204)


# ------------------------------------------------------------------ issue and sign
def _issue_request(body: IssueBody) -> IssueRequest:
    if body.secret_path:
        require_grant(body.secret_path, "write")
    return IssueRequest(common_name=body.common_name, alt_names=body.alt_names, ip_sans=body.ip_sans, ttl=body.ttl,
                        secret_path=body.secret_path, auto_renew=body.auto_renew)


@bp.post("/v1/pki/issue/<role>")
@endpoint("pki:issue", scope="pki:issue", body=IssueBody, status=201,
          summary="Issue a certificate and key under a role (the private key is returned once)",
          authorize=permission("write", each=True))
def issue(role: str):
    require_grant(f"pki/issue/{role[:64]}", "write")
    req = _issue_request(g.body)
    return jsonify(runtime().pki.issue(owner(), role, req, actor(), entry_for_request)), 201


@bp.post("/v1/pki/sign/<role>")
@endpoint("pki:issue", scope="pki:issue", body=SignBody, status=201,
          summary="Sign a CSR under a role (the CSR's names get the role's checks)",
          authorize=permission("write", each=True))
def sign(role: str):
    require_grant(f"pki/sign/{role[:64]}", "write")
    req = _issue_request(g.body)
    req.csr = g.body.csr
    return jsonify(runtime().pki.sign(owner(), role, req, actor(), entry_for_request)), 201


# ------------------------------------------------------------------ inventory and revocation
@bp.get("/v1/pki/certificates")
@endpoint("pki:issue", summary="Issued certificates the caller may list (cursor pagination)",
          query={"ca_id": "only this CA's", "expiring_within": "duration, e.g. 7d",
                 "include_revoked": "true: revoked ones too", "limit": "1..1000", "cursor": "from the previous page"},
          authorize=permission("list", each=True))
def list_certificates():
    require_any_scope("pki:admin", "pki:issue")
    within = None
    if request.args.get("expiring_within"):
        try:
            within = parse_duration(request.args["expiring_within"])
        except ValueError:
            raise ScaiVaultError("invalid_duration", "expiring_within must be a duration such as 7d") from None
    page = runtime().pki.list_certificates(owner(), ca_id=request.args.get("ca_id"), expiring_within=within,
                                           include_revoked=bool_arg("include_revoked"),
                                           limit=request.args.get("limit"), cursor=request.args.get("cursor"),
                                           visible=visible("list"))
    audit_read("pki/certificates", listed=len(page["certificates"]))
    return jsonify(page)


def _certificate_for(cert_id: str, permission: str) -> dict:
    row = runtime().pki.certificate_row(owner(), cert_id)
    require_grant(certificate_policy_path(row["ca_name"], row["serial_number"]), permission)
    return row


@bp.get("/v1/pki/certificates/<cert_id>")
@endpoint("pki:issue", summary="One issued certificate's record (with its PEM)",
          authorize=permission("read", each=True))
def get_certificate(cert_id: str):
    require_any_scope("pki:admin", "pki:issue")
    row = _certificate_for(cert_id, "read")
    audit_read(certificate_policy_path(row["ca_name"], row["serial_number"]), certificate_id=row["id"])
    return jsonify({**runtime().pki.certificate_view(row), "certificate": row["certificate_pem"]})


@bp.get("/v1/pki/certificates/<cert_id>/pem")
@endpoint("pki:issue", summary="Just the certificate, PEM", authorize=permission("read", each=True),
          produces=("application/x-pem-file",))
def certificate_pem(cert_id: str):
    require_any_scope("pki:admin", "pki:issue")
    row = _certificate_for(cert_id, "read")
    audit_read(certificate_policy_path(row["ca_name"], row["serial_number"]), certificate_id=row["id"])
    return Response(row["certificate_pem"], mimetype="application/x-pem-file")


@bp.post("/v1/pki/certificates/<cert_id>/revoke")
@endpoint("pki:admin", scope="pki:admin", body=RevokeBody,
          summary="Revoke a certificate (RFC 5280 reason); its CA's CRL is regenerated at once",
          authorize=permission("write", each=True))
def revoke_certificate(cert_id: str):
    row = _certificate_for(cert_id, "write")
    return jsonify(runtime().pki.revoke_certificate(owner(), row["id"], g.body.reason, entry_for_request))
