"""Deterministic workflow code only. Modules here import `temporalio` and `core` schemas, nothing
that does I/O; saved histories replay in the tests."""
