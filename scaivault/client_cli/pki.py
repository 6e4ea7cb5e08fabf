"""`scaivault pki ...`: certificate authorities, roles, issue and sign, the certificate inventory."""
from __future__ import annotations

import os

import click

from . import ClientGroup, sdk
from .output import fail, json_option, print_fields, print_json, print_table, respond


@click.group("pki", cls=ClientGroup, help="Certificates: CAs, roles, issue, sign, inventory, revocation.")
def pki_group() -> None:
    pass


@pki_group.group("ca", cls=ClientGroup, help="Certificate authorities (admins).")
def ca_group() -> None:
    pass


@ca_group.command("create", help="Create a root (or intermediate, with --parent) CA.")
@click.argument("name")
@click.option("--common-name", required=True)
@click.option("--type", "ca_type", type=click.Choice(["root", "intermediate"]), default="root", show_default=True)
@click.option("--parent", "parent_ca_id", help="Parent CA id (intermediate).")
@click.option("--key-type", type=click.Choice(["rsa", "ec"]))
@click.option("--key-size", type=int, help="rsa 2048|4096, ec 256|384.")
@click.option("--ttl", help="Lifetime such as 87600h.")
@click.option("--key-storage", type=click.Choice(["sealed", "hsm"]),
              help="hsm: generate the key inside the HSM (server with KMS_PROVIDER=pkcs11).")
@json_option
@click.pass_context
def ca_create(ctx: click.Context, name, common_name, ca_type, parent_ca_id, key_type, key_size, ttl, key_storage,
              as_json: bool) -> None:
    ca = sdk(ctx).pki.create_ca(name, common_name, ca_type=ca_type, parent_ca_id=parent_ca_id, key_type=key_type,
                                key_size=key_size, ttl=ttl, key_storage=key_storage)
    respond(as_json, ca, f"created CA {ca.id} ({ca.name}, {ca.status})")


@ca_group.command("list", help="The tenant's CAs.")
@json_option
@click.pass_context
def ca_list(ctx: click.Context, as_json: bool) -> None:
    cas = sdk(ctx).pki.list_cas()
    if as_json:
        print_json({"cas": cas})
        return
    print_table(["id", "name", "type", "status", "valid until", "issued"],
                [[c.id, c.name, c.ca_type, c.status, c.valid_until, c.certificates_issued] for c in cas],
                empty="(no CAs)")


@ca_group.command("get", help="One CA; `--pem` prints only its certificate.")
@click.argument("ca_id")
@click.option("--pem", is_flag=True, help="Print the CA certificate (PEM) only.")
@json_option
@click.pass_context
def ca_get(ctx: click.Context, ca_id: str, pem: bool, as_json: bool) -> None:
    client = sdk(ctx)
    if pem:
        click.echo(client.pki.ca_certificate(ca_id), nl=False)
        return
    ca = client.pki.get_ca(ca_id)
    if as_json:
        print_json(ca)
        return
    print_fields([("id", ca.id), ("name", ca.name), ("common name", ca.common_name), ("type", ca.ca_type),
                  ("status", ca.status), ("serial", ca.serial_number), ("valid until", ca.valid_until)])


@pki_group.group("roles", cls=ClientGroup, help="PKI roles: which names a CA issues for, and how.")
def roles_group() -> None:
    pass


@roles_group.command("create", help="Create a role signed by --ca.")
@click.argument("name")
@click.option("--ca", "ca_id", required=True, help="The CA id.")
@click.option("--allowed-domain", "domains", multiple=True, help="A domain (repeatable).")
@click.option("--allow-subdomains", is_flag=True, default=None)
@click.option("--allow-ip-sans", is_flag=True, default=None)
@click.option("--ttl")
@click.option("--max-ttl")
@json_option
@click.pass_context
def roles_create(ctx: click.Context, name, ca_id, domains, allow_subdomains, allow_ip_sans, ttl, max_ttl,
                 as_json: bool) -> None:
    role = sdk(ctx).pki.create_role(name, ca_id, allowed_domains=list(domains) or None,
                                    allow_subdomains=allow_subdomains, allow_ip_sans=allow_ip_sans, ttl=ttl,
                                    max_ttl=max_ttl)
    respond(as_json, role, f"created PKI role {role.name}")


@roles_group.command("list", help="PKI roles.")
@json_option
@click.pass_context
def roles_list(ctx: click.Context, as_json: bool) -> None:
    roles = sdk(ctx).pki.list_roles()
    if as_json:
        print_json({"roles": roles})
        return
    print_table(["name", "ca", "domains", "max ttl"], [[r.name, r.ca_id, r.allowed_domains, r.max_ttl] for r in roles],
                empty="(no roles)")


@roles_group.command("get", help="One PKI role.")
@click.argument("name")
@json_option
@click.pass_context
def roles_get(ctx: click.Context, name: str, as_json: bool) -> None:
    role = sdk(ctx).pki.get_role(name)
    if as_json:
        print_json(role)
    else:
        print_fields(sorted(role.model_dump().items()))


@roles_group.command("delete", help="Delete a PKI role.")
@click.argument("name")
@json_option
@click.pass_context
def roles_delete(ctx: click.Context, name: str, as_json: bool) -> None:
    respond(as_json, sdk(ctx).pki.delete_role(name), f"deleted PKI role {name}")


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _emit_issued(issued, as_json: bool, cert_out: str | None, key_out: str | None) -> None:
    if cert_out:
        with open(cert_out, "w") as handle:
            handle.write(issued.certificate + "".join(issued.ca_chain))
    if key_out and issued.private_key:
        _write_private(key_out, issued.private_key)
    if as_json:
        print_json(issued)
    elif cert_out or key_out:
        click.echo(f"issued {issued.id} serial {issued.serial_number}, expires {issued.expires_at}")
    else:
        click.echo(issued.certificate + "".join(issued.ca_chain) + (issued.private_key or ""), nl=False)


@pki_group.command("issue", help="Issue a certificate and key under ROLE; PEMs on stdout, or --cert-out/--key-out "
                                 "(the key file is created 0600).")
@click.argument("role")
@click.option("--common-name", "-n", help="The certificate's CN.")
@click.option("--alt-name", "alt_names", multiple=True, help="A DNS SAN (repeatable).")
@click.option("--ip-san", "ip_sans", multiple=True, help="An IP SAN (repeatable).")
@click.option("--ttl")
@click.option("--cert-out", type=click.Path(dir_okay=False), help="Write certificate and chain here.")
@click.option("--key-out", type=click.Path(dir_okay=False), help="Write the private key here (mode 0600).")
@json_option
@click.pass_context
def issue(ctx: click.Context, role, common_name, alt_names, ip_sans, ttl, cert_out, key_out, as_json: bool) -> None:
    issued = sdk(ctx).pki.issue(role, common_name, alt_names=list(alt_names) or None, ip_sans=list(ip_sans) or None,
                                ttl=ttl)
    _emit_issued(issued, as_json, cert_out, key_out)


@pki_group.command("sign", help="Sign a PKCS#10 CSR (file, or - for stdin) under ROLE.")
@click.argument("role")
@click.option("--csr", "csr_file", required=True, help="CSR file ('-' = stdin).")
@click.option("--ttl")
@click.option("--cert-out", type=click.Path(dir_okay=False))
@json_option
@click.pass_context
def sign(ctx: click.Context, role: str, csr_file: str, ttl: str | None, cert_out: str | None, as_json: bool) -> None:
    try:
        csr = click.get_text_stream("stdin").read() if csr_file == "-" else open(csr_file).read()
    except OSError as exc:
        fail(f"cannot read {csr_file}: {exc.strerror}", 1)
    _emit_issued(sdk(ctx).pki.sign(role, csr, ttl=ttl), as_json, cert_out, None)


@pki_group.group("certs", cls=ClientGroup, help="Issued certificates.")
def certs_group() -> None:
    pass


@certs_group.command("list", help="Issued certificates you may list.")
@click.option("--ca", "ca_id")
@click.option("--expiring-within", help="Such as 30d.")
@click.option("--include-revoked", is_flag=True)
@click.option("--limit", type=click.IntRange(min=1))
@json_option
@click.pass_context
def certs_list(ctx: click.Context, ca_id, expiring_within, include_revoked, limit, as_json: bool) -> None:
    certs = list(sdk(ctx).pki.certificates(ca_id=ca_id, expiring_within=expiring_within,
                                           include_revoked=include_revoked, max_items=limit))
    if as_json:
        print_json({"certificates": certs})
        return
    print_table(["id", "common name", "serial", "expires", "revoked"],
                [[c.id, c.common_name, c.serial_number, c.expires_at, c.revoked] for c in certs],
                empty="(no certificates)")


@certs_group.command("get", help="One certificate's record (and PEM with --json).")
@click.argument("cert_id")
@json_option
@click.pass_context
def certs_get(ctx: click.Context, cert_id: str, as_json: bool) -> None:
    cert = sdk(ctx).pki.get_certificate(cert_id)
    if as_json:
        print_json(cert)
        return
    print_fields([("id", cert.id), ("common name", cert.common_name), ("names", cert.dns_names),
                  ("serial", cert.serial_number), ("expires", cert.expires_at), ("revoked", cert.revoked)])


@certs_group.command("revoke", help="Revoke a certificate (its CA's CRL is regenerated at once).")
@click.argument("cert_id")
@click.option("--reason", help="key_compromise, superseded, cessation_of_operation, ...")
@json_option
@click.pass_context
def certs_revoke(ctx: click.Context, cert_id: str, reason: str | None, as_json: bool) -> None:
    cert = sdk(ctx).pki.revoke_certificate(cert_id, reason=reason)
    respond(as_json, cert, f"revoked {cert.id} serial {cert.serial_number}")
