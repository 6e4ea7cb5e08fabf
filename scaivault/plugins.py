"""pluggy hook specifications and the plugin manager (entry-point group `scaivault`).

A plugin is a module or object with @hookimpl functions; it is found through the
`scaivault` entry-point group, exactly as a third-party pip package would register one.
Each hook returns {name: factory}; the registry merges them and selects by configured name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pluggy

from .config import ConfigError

PROJECT = "scaivault"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ScaiVaultSpec:
    @hookspec
    def scaivault_kms_providers(self):
        """Return {name: factory(settings, key_ref) -> KmsProvider}; key_ref None = the configured key."""

    @hookspec
    def scaivault_storage_backends(self):
        """Return {name: factory(settings, runtime) -> StorageBackend} (scaivault.storage)."""

    @hookspec
    def scaivault_dns_providers(self):
        """Return {name: factory(config) -> DnsProvider} (ACME DNS-01 challenges)."""

    @hookspec
    def scaivault_dynamic_engines(self):
        """Return {name: factory(runtime, config) -> DynamicEngine} (dynamic secrets)."""

    @hookspec
    def scaivault_federation_backends(self):
        """Return {name: factory(runtime, config) -> FederationBackend}."""


# hook name -> what the configuration calls it, for error messages
KINDS = {
    "scaivault_kms_providers": "KMS_PROVIDER",
    "scaivault_storage_backends": "STORAGE_PROVIDER",
    "scaivault_dns_providers": "DNS provider",
    "scaivault_dynamic_engines": "dynamic engine",
    "scaivault_federation_backends": "federation backend",
}

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


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (after installing a package at run time, or in tests)."""
    global _MANAGER
    _MANAGER = None


@dataclass(frozen=True)
class Registration:
    name: str
    factory: Callable[..., Any]
    plugin: str                 # entry-point name of the plugin that registered it
    distribution: str | None
    version: str | None


def registrations(hook_name: str, pm: pluggy.PluginManager | None = None) -> dict[str, Registration]:
    """Every name registered on one hook; a later plugin does not silently replace an earlier one."""
    pm = pm or get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    found: dict[str, Registration] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        named = impl.function() or {}
        dist = dists.get(id(impl.plugin))
        for name, factory in named.items():
            if name in found:
                continue
            found[name] = Registration(name, factory, impl.plugin_name,
                                       getattr(dist, "project_name", None), getattr(dist, "version", None))
    return found


def select(hook_name: str, name: str | None, pm: pluggy.PluginManager | None = None) -> Registration:
    """The registration called `name`, or ConfigError listing the installed names."""
    found = registrations(hook_name, pm)
    variable = KINDS.get(hook_name, hook_name)
    if name and name in found:
        return found[name]
    installed = ", ".join(sorted(found)) or "none"
    problem = "is not set" if not name else f"unknown provider {name!r}"
    raise ConfigError(variable, f"{problem}; installed: {installed}")


def describe_plugins(pm: pluggy.PluginManager | None = None) -> list[dict[str, Any]]:
    """Loaded plugins with their distribution, version and what each provides."""
    pm = pm or get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    result = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        if name is None or name.isdigit():
            continue
        provides: dict[str, list[str]] = {}
        for hook_name in KINDS:
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                if impl.plugin is plugin:
                    provides.setdefault(hook_name.removeprefix("scaivault_"), []).extend(sorted(impl.function() or {}))
        dist = dists.get(id(plugin))
        result.append({"name": name, "distribution": getattr(dist, "project_name", None),
                       "version": getattr(dist, "version", None), "provides": provides})
    return sorted(result, key=lambda p: p["name"])
