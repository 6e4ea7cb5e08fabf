"""`scaivault dynamic ...`: credentials generated under a lease (creds), leases, engines and roles."""
from __future__ import annotations

import click

from . import ClientGroup, sdk
from .output import json_option, print_fields, print_json, print_table, respond

TTL = click.option("--ttl", help="Lease TTL such as 15m or 1h (capped by the role's and engine's max_ttl).")


@click.group("dynamic", cls=ClientGroup, help="Dynamic database credentials: creds, leases, engines, roles.")
def dynamic_group() -> None:
    pass


@dynamic_group.command("creds", help="Generate a credential for ENGINE/ROLE: a new database user under a lease.")
@click.argument("engine")
@click.argument("role")
@TTL
@json_option
@click.pass_context
def creds(ctx: click.Context, engine: str, role: str, ttl: str | None, as_json: bool) -> None:
    generated = sdk(ctx).dynamic.generate(engine, role, ttl=ttl)
    if as_json:
        print_json(generated)
        return
    print_fields([("lease_id", generated.lease_id), ("lease_duration", f"{generated.lease_duration}s"),
                  ("renewable", generated.renewable), ("expires_at", generated.expires_at),
                  *sorted(generated.data.items())])


# ------------------------------------------------------------------ leases
@dynamic_group.group("leases", cls=ClientGroup, help="Leases of generated credentials.")
def leases_group() -> None:
    pass


@leases_group.command("list", help="Your leases and those of roles you may list.")
@click.option("--engine")
@click.option("--role")
@click.option("--state", type=click.Choice(["active", "revoke_failed", "revoked", "live"]))
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@json_option
@click.pass_context
def leases_list(ctx: click.Context, engine, role, state, limit, as_json: bool) -> None:
    items = list(sdk(ctx).leases.list(engine=engine, role=role, state=state, max_items=limit))
    if as_json:
        print_json({"leases": items})
        return
    print_table(["lease", "user", "state", "ttl", "expires"],
                [[x.lease_id, x.username, x.state, x.ttl, x.expires_at] for x in items], empty="(no leases)")


@leases_group.command("get", help="One lease (never its password).")
@click.argument("lease_id")
@json_option
@click.pass_context
def leases_get(ctx: click.Context, lease_id: str, as_json: bool) -> None:
    lease = sdk(ctx).leases.get(lease_id)
    if as_json:
        print_json(lease)
        return
    print_fields(sorted(lease.model_dump().items()))


@leases_group.command("renew", help="Extend a lease to now + --increment (default: the role's TTL).")
@click.argument("lease_id")
@click.option("--increment", help="Such as 30m.")
@json_option
@click.pass_context
def leases_renew(ctx: click.Context, lease_id: str, increment: str | None, as_json: bool) -> None:
    lease = sdk(ctx).leases.renew(lease_id, increment=increment)
    respond(as_json, lease, f"renewed {lease.lease_id} until {lease.expires_at}")


@leases_group.command("revoke", help="Revoke a lease now (drops the database user).")
@click.argument("lease_id")
@json_option
@click.pass_context
def leases_revoke(ctx: click.Context, lease_id: str, as_json: bool) -> None:
    lease = sdk(ctx).leases.revoke(lease_id)
    respond(as_json, lease, f"{lease.state} {lease.lease_id}")


@leases_group.command("revoke-prefix", help="Revoke every live lease whose id starts with PREFIX (ENGINE/ or "
                                            "ENGINE/ROLE/).")
@click.argument("prefix")
@json_option
@click.pass_context
def leases_revoke_prefix(ctx: click.Context, prefix: str, as_json: bool) -> None:
    result = sdk(ctx).leases.revoke_prefix(prefix)
    if as_json:
        print_json(result)
    else:
        print_fields(sorted(result.items()))


# ------------------------------------------------------------------ engines and roles
@dynamic_group.group("engines", cls=ClientGroup, help="Database engines (admins).")
def engines_group() -> None:
    pass


@engines_group.command("list", help="Engines you may list.")
@json_option
@click.pass_context
def engines_list(ctx: click.Context, as_json: bool) -> None:
    items = sdk(ctx).dynamic.list_engines()
    if as_json:
        print_json({"engines": items})
        return
    print_table(["name", "plugin", "health", "default ttl", "max ttl"],
                [[e.name, e.config.get("plugin"), e.health, e.default_ttl, e.max_ttl] for e in items],
                empty="(no engines)")


@engines_group.command("get", help="One engine (never its root credentials).")
@click.argument("name")
@json_option
@click.pass_context
def engines_get(ctx: click.Context, name: str, as_json: bool) -> None:
    engine = sdk(ctx).dynamic.get_engine(name)
    if as_json:
        print_json(engine)
        return
    print_fields([("name", engine.name), ("type", engine.type), *sorted(engine.config.items()),
                  ("default_ttl", engine.default_ttl), ("max_ttl", engine.max_ttl), ("health", engine.health)])


@engines_group.command("create", help="Create an engine; the root credentials live in a secret "
                                      "({username, password}) you may read.")
@click.argument("name")
@click.option("--plugin", required=True, help="postgresql, mysql, mariadb, ...")
@click.option("--connection-url", required=True, help="With {{username}} and {{password}} placeholders.")
@click.option("--root-credentials-path", required=True, help="Secret path holding the root username and password.")
@click.option("--default-ttl")
@click.option("--max-ttl")
@json_option
@click.pass_context
def engines_create(ctx: click.Context, name, plugin, connection_url, root_credentials_path, default_ttl, max_ttl,
                   as_json: bool) -> None:
    engine = sdk(ctx).dynamic.create_engine(name, plugin=plugin, connection_url=connection_url,
                                            root_credentials_path=root_credentials_path, default_ttl=default_ttl,
                                            max_ttl=max_ttl)
    respond(as_json, engine, f"created engine {engine.name} ({engine.health})")


@engines_group.command("delete", help="Delete an engine (--force revokes its live leases first).")
@click.argument("name")
@click.option("--force", is_flag=True)
@json_option
@click.pass_context
def engines_delete(ctx: click.Context, name: str, force: bool, as_json: bool) -> None:
    respond(as_json, sdk(ctx).dynamic.delete_engine(name, force=force), f"deleted engine {name}")


@engines_group.command("health", help="Test the engine's connection; lease counts and failed revocations.")
@click.argument("name")
@json_option
@click.pass_context
def engines_health(ctx: click.Context, name: str, as_json: bool) -> None:
    report = sdk(ctx).dynamic.engine_health(name)
    if as_json:
        print_json(report)
    else:
        print_fields(sorted(report.items()))


@engines_group.command("rotate-root", help="Give the engine's root user a new password only ScaiVault knows.")
@click.argument("name")
@json_option
@click.pass_context
def engines_rotate_root(ctx: click.Context, name: str, as_json: bool) -> None:
    respond(as_json, sdk(ctx).dynamic.rotate_root(name), f"rotated the root credentials of {name}")


@dynamic_group.group("roles", cls=ClientGroup, help="Roles of an engine: the SQL that creates and drops users.")
def roles_group() -> None:
    pass


@roles_group.command("list", help="Roles of ENGINE.")
@click.argument("engine")
@json_option
@click.pass_context
def roles_list(ctx: click.Context, engine: str, as_json: bool) -> None:
    items = sdk(ctx).dynamic.list_roles(engine)
    if as_json:
        print_json({"roles": items})
        return
    print_table(["name", "default ttl", "max ttl", "updated"],
                [[r.name, r.default_ttl, r.max_ttl, r.updated_at] for r in items], empty="(no roles)")


@roles_group.command("get", help="One role with its statements.")
@click.argument("engine")
@click.argument("role")
@json_option
@click.pass_context
def roles_get(ctx: click.Context, engine: str, role: str, as_json: bool) -> None:
    found = sdk(ctx).dynamic.get_role(engine, role)
    if as_json:
        print_json(found)
        return
    print_fields([("engine", found.engine), ("name", found.name), ("default_ttl", found.default_ttl),
                  ("max_ttl", found.max_ttl), ("creation", found.creation_statements),
                  ("revocation", found.revocation_statements)])


@roles_group.command("put", help="Create or replace ROLE of ENGINE ({{name}} {{password}} {{expiration}} in SQL).")
@click.argument("engine")
@click.argument("role")
@click.option("--creation", "creation", multiple=True, required=True, help="A creation statement (repeatable).")
@click.option("--revocation", "revocation", multiple=True, help="A revocation statement (repeatable).")
@click.option("--default-ttl")
@click.option("--max-ttl")
@json_option
@click.pass_context
def roles_put(ctx: click.Context, engine, role, creation, revocation, default_ttl, max_ttl, as_json: bool) -> None:
    saved = sdk(ctx).dynamic.put_role(engine, role, list(creation), revocation_statements=list(revocation) or None,
                                      default_ttl=default_ttl, max_ttl=max_ttl)
    respond(as_json, saved, f"saved role {saved.engine}/{saved.name}")


@roles_group.command("delete", help="Delete a role (refused while it has live leases).")
@click.argument("engine")
@click.argument("role")
@json_option
@click.pass_context
def roles_delete(ctx: click.Context, engine: str, role: str, as_json: bool) -> None:
    respond(as_json, sdk(ctx).dynamic.delete_role(engine, role), f"deleted role {engine}/{role}")
