"""The HTTP API: app factory, one controller module per resource, error mapping, SSE."""
