"""pluggy hook specifications and the plugin manager (entry-point group `scaivault`).

A plugin is a module or object with @hookimpl functions; it is found through the
`scaivault` entry-point group, exactly as a third-party pip package would register one.
Each hook returns {name: factory}; the registry merges them and selects by configured name.
"""
from __future__ import annotations

import pluggy

PROJECT = "scaivault"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ScaiVaultSpec:
    @hookspec
    def scaivault_kms_providers(self):
        """Return {name: factory(settings, key_ref) -> KmsProvider}."""

    @hookspec
    def scaivault_storage_backends(self):
        """Return {name: factory(settings) -> StorageBackend}."""


_MANAGER: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager with every installed entry point loaded."""
    global _MANAGER
    if _MANAGER is None:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(ScaiVaultSpec)
        pm.load_setuptools_entrypoints(PROJECT)
        _MANAGER = pm
    return _MANAGER
