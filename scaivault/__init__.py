"""ScaiVault: a self-hosted, multi-tenant secrets and certificate management service."""

__version__ = "0.1.0"
