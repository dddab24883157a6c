"""Domain services: what the controllers and activities call. They raise `core.errors` exceptions
and commit their own transactions."""
