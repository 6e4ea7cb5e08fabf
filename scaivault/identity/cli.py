"""`scaivault identity sync`: run one identity sync from ScaiKey now and print the run as JSON."""
from __future__ import annotations

import json
import sys

from ..config import Settings
from ..runtime import Runtime
from . import sync


def run_identity_command(args, settings: Settings) -> int:
    """Exit 0 when the sync succeeded, 1 when it failed or another runner held the lock."""
    runtime = Runtime(settings)
    try:
        run = sync.new_run(runtime, trigger="cli", partner_id=args.partner, tenant_id=args.tenant,
                           requested_by="system:cli")
        result = sync.run_sync(runtime, run)
        view = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in result.items()}
        sys.stdout.write(json.dumps(view) + "\n")
        return 0 if result["status"] == "succeeded" else 1
    finally:
        runtime.close()
