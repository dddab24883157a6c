"""The web console: a browser app served from this process at `/`, using only the public API."""

from api.console.routes import console_handlers

__all__ = ["console_handlers"]
