"""Capabilities: the registry and one module per built-in capability (arriving with their issue)."""
