"""The one way to reach Temporal: a client with the shared data converter."""

from __future__ import annotations

from temporalio.client import Client

from core.converter import data_converter


async def connect(address: str, namespace: str, *, lazy: bool = False) -> Client:
    """`lazy=True` defers the connection to the first call, so a server that is down at start-up
    shows as not ready instead of stopping the process."""
    return await Client.connect(address, namespace=namespace, data_converter=data_converter, lazy=lazy)
