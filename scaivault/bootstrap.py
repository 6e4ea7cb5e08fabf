"""First-boot steps, run after migrations by every starting instance (idempotent, race-safe)."""
from __future__ import annotations

from .runtime import Runtime


def first_boot(runtime: Runtime) -> None:
    """Create the encryption root and record the bootstrap super admin, if not done yet."""
    # creates the root record once (insert-or-read), then refuses to go on with a wrong KMS key
    runtime.keyring.ensure_root()
    # selects the STORAGE_PROVIDER plugin now: an unknown name must stop start-up, not a later write
    runtime.storage
    from .auth.roles import record_bootstrap_setting

    record_bootstrap_setting(runtime)
