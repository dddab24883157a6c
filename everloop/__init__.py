"""The entry points, the top floor: the `everloop` CLI, the embedded dev stack, the worker's assembly,
the dev seed and the sweeper. Everything else is imported from here; nothing imports this package
(except tests)."""
