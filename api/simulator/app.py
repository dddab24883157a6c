"""The simulator on its own: the same router, without the database, Redis or Temporal."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

import core
from api.middleware import RequestContextMiddleware
from api.simulator.routes import EXCEPTION_HANDLERS, simulator_router


def create_simulator_app() -> Litestar:
    app = Litestar(
        route_handlers=[simulator_router],
        # Unknown paths and methods fail outside the router: answer those in OpenAI's shape too.
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Everloop LLM simulator",
            version=core.__version__,
            description="OpenAI-compatible chat completions with scripted, deterministic answers.",
            path="/api-doc",
            render_plugins=[JsonRenderPlugin()],
            use_handler_docstrings=True,
        ),
        debug=False,
        logging_config=None,
    )
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)
    return app


def run_simulator(host: str, port: int) -> None:
    """Serves the simulator at http://host:port/simulator/v1 until interrupted."""
    import uvicorn

    uvicorn.run(create_simulator_app(), host=host, port=port, log_config=None, access_log=False)
