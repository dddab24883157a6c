"""Every side effect the workflows need: LLM calls, tool runs, persistence, publishing."""
