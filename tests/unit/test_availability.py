"""`is_unavailable` on errors that merely involved the network: not the database away, so not retried.
Against errors a real database raises: tests/integration/test_availability.py."""

from __future__ import annotations

import socket

from temporalio.exceptions import ApplicationError

from core.db.availability import is_unavailable


def test_errors_that_merely_involved_the_network_are_not_unavailable() -> None:
    try:
        try:
            socket.getaddrinfo("name.invalid", 443)
        except OSError as dns:
            raise ApplicationError("provider_address_refused", non_retryable=True) from dns
    except ApplicationError as refused:
        assert not is_unavailable(refused)
    assert not is_unavailable(FileNotFoundError("/nowhere"))
    assert not is_unavailable(ValueError("bad"))
