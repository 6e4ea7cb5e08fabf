"""First-party ScaiVault plugins, each registered through the `scaivault` entry-point group."""
