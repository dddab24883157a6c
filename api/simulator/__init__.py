"""An OpenAI-compatible chat-completions simulator, so a fresh install chats without API keys and
tests drive the real litellm path over real HTTP.

Point litellm at it with `model="openai/<any name>"`, `api_base=".../simulator/v1"`, any `api_key`,
and configure each request with `extra_body={"simulator": {...}}` (see `config.SimulatorConfig`).
"""

from api.simulator.app import create_simulator_app, run_simulator
from api.simulator.routes import simulator_router

__all__ = ["create_simulator_app", "run_simulator", "simulator_router"]
