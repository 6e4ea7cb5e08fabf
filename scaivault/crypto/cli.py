"""`scaivault keys rotate|status`: the command-line side of key rotation (audited as `system`)."""
from __future__ import annotations

import json
import sys

from ..config import Settings
from ..errors import ScaiVaultError
from ..runtime import Runtime
from .rotation import rotate_root, rotate_tenant_key
from .status import key_status


def run_keys_command(args, settings: Settings) -> int:
    runtime = Runtime(settings)
    try:
        if args.keys_command == "status":
            report = key_status(runtime.db, partner_id=args.partner, limit=1000)
            report["encryption"] = runtime.keyring.health()
            sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
            return 0
        actor = "system:cli"
        if args.tenant and not args.partner:
            sys.stderr.write("scaivault: --tenant needs --partner\n")
            return 2
        try:
            if args.partner:
                result = rotate_tenant_key(runtime.keyring, args.partner, args.tenant, actor=actor)
            else:
                result = rotate_root(runtime.keyring, actor=actor)
        except ScaiVaultError as exc:
            # an interrupted root rotation resumes when the command runs again
            sys.stderr.write(f"scaivault: key rotation failed ({exc.code}): {exc.message}; run it again to resume\n")
            return 1
        _audit(runtime, result, args)
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
        return 0
    finally:
        runtime.close()


def _audit(runtime: Runtime, result, args) -> None:
    from ..audit import AuditEntry, record_now

    record_now(runtime, AuditEntry(action="rotate", tenant_id=args.tenant, partner_id=args.partner,
                                   identity_type="system", identity_id="system:cli",
                                   extra_data={"key_rotation": result.as_dict()}))
