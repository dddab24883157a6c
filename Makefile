# `make help` lists the targets. Everything runs from a fresh clone with only Python 3.11+ installed.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Trust the machine's certificate store (as pip does), so TLS-inspecting proxies work too.
export UV_SYSTEM_CERTS ?= true
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: help install browser dev services test pytest bench bench-loop bench-tokens bench-profile bench-langgraph bench-throughput bench-streams bench-processes bench-traces bench-events bench-knowledge bench-calls bench-limits bench-webhooks bench-console bench-llm checkov lint fmt lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(UV): tools/bootstrap-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes -r tools/bootstrap-requirements.txt
	@touch $(UV)

install: $(UV) ## Install the exact locked dependencies into .venv (uv.lock, hash-checked)
	$(UV) sync --locked --python $(PYTHON) --quiet

# The browser tests (tests/clients) drive Debian's chromium through Playwright: installed from the
# distribution when missing, never with `playwright install` (which downloads at run time).
browser: ## Install Debian's chromium for the browser tests, if it is missing
	@command -v chromium >/dev/null || { \
		echo "installing chromium (apt) for the browser tests"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium >/dev/null; }

dev: install ## Run everything on the embedded stack: API, worker, PostgreSQL, Redis, Temporal + UI
	$(VENV)/bin/everloop dev

services: install ## Run only PostgreSQL, Redis and Temporal, printing their addresses
	$(VENV)/bin/everloop services

# `make test` runs the tests on this many processes (pytest-xdist), each with its own embedded stack
# on free ports; a module's tests stay together. WORKERS=0 runs them in this process. Four on two
# cores: the suite waits more than it computes (timers, heartbeats, browsers), so extra processes
# fill the waits. A fresh clone (1261 tests + schemathesis) took 17:58 on 2026-11-30 with xdist's
# own order (modules with the most tests first); 20:30 with `--no-loadscope-reorder` (longest
# first), where the kill and chaos modules ran at once and slowed each other.
WORKERS ?= 4

# Schemathesis generates its tests at run time, which xdist would report as one test: it runs in a
# pytest of its own (its own stack, free ports) beside the xdist run, its report printed after. The
# two together leave no core idle while either waits on Temporal or PostgreSQL.
SCHEMATHESIS_LOG := .everloop-schemathesis.log
test: lint browser checkov ## The CI command: lint, then every test against a real embedded stack, in parallel
	@$(VENV)/bin/pytest tests/api/test_schemathesis.py > $(SCHEMATHESIS_LOG) 2>&1 & schema=$$!; \
	main=0; $(VENV)/bin/pytest -n $(WORKERS) --dist loadfile --ignore=tests/api/test_schemathesis.py $(ARGS) || main=$$?; \
	api=0; wait $$schema || api=$$?; \
	echo "--- tests/api/test_schemathesis.py (ran beside the run above)"; cat $(SCHEMATHESIS_LOG); \
	rm -f $(SCHEMATHESIS_LOG); \
	exit $$(( main != 0 ? main : api ))

# deploy/'s validators, run by tests/unit/test_deploy_checkov.py: a virtualenv of their own from a
# hash-pinned list, as checkov's pins conflict with litellm's in uv.lock (tools/checkov-requirements.txt).
checkov: $(UV) ## Install checkov, check-jsonschema and kubernetes-validate into .tools/checkov (hash-checked)
	@[ -x $(TOOLS)/checkov/bin/python ] || $(UV) venv --no-config --quiet --python $(PYTHON) $(TOOLS)/checkov
	VIRTUAL_ENV=$(TOOLS)/checkov $(UV) pip sync --no-config --quiet --require-hashes tools/checkov-requirements.txt

pytest: install browser checkov ## Only the tests, in one process (pass ARGS="-k name" to select)
	$(VENV)/bin/pytest $(ARGS)

# ARGS goes to the benchmark named (`make bench-traces ARGS="--spans 20000 --traces 2000"`); with
# `make bench` it goes to the loop's, as before, and LOOP_ARGS / TRACE_ARGS / ... reach each one.
only_named = $(if $(filter bench,$(MAKECMDGOALS)),,$(ARGS))
LOOP_ARGS ?= $(ARGS)
TOKEN_ARGS ?= $(only_named)
LLM_ARGS ?= $(only_named)
LANGGRAPH_ARGS ?= $(only_named)
THROUGHPUT_ARGS ?= $(only_named)
STREAMS_ARGS ?= $(only_named)
PROCESSES_ARGS ?= $(only_named)
TRACE_ARGS ?= $(only_named)

# Issue 18's figures, each printed beside its target (docs/benchmarks.md says what bounds each). Each
# starts a stack of its own; the whole takes about 30 minutes on 2 quiet cores.
bench: bench-loop bench-tokens bench-llm bench-langgraph bench-throughput bench-streams bench-processes bench-traces ## Every figure of issue 18 and the trace store (printed, not pass/fail; LOOP_ARGS=, TOKEN_ARGS=, ... per part)
bench-loop: install ## Loop latency: one-tool and 10-step turns vs bare Temporal (ARGS="--iterations 30", "--steps 0", "--sweep")
	$(VENV)/bin/python -m tests.bench.loop_latency $(LOOP_ARGS)

bench-tokens: install ## A model token -> SSE client, p50/p99, through worker, Redis and everloop api (ARGS="--turns 20 --chunk-delay 0")
	$(VENV)/bin/python -m tests.bench.token_latency $(TOKEN_ARGS)

bench-profile: install ## Where a one-tool turn's time goes: activities, SQL statements and transactions, litellm, Redis (ARGS="--iterations 20")
	$(VENV)/bin/python -m tests.bench.loop_profile $(ARGS)

# The `bench` group (uv.lock) goes into an environment of its own, .tools/bench, so .venv keeps
# exactly what `make install` puts there (langchain brings langsmith, whose pytest plugin would load
# in every test run). `langgraph dev` gets .tools/langgraph from tests/bench/langgraph_app/
# requirements.txt (hash-checked; made by the benchmark when missing): langgraph-api pins
# structlog<26 and everloop needs >=26.1, so it cannot share a lock with the project.
bench-langgraph: $(UV) ## Everloop's one-tool turn vs LangGraph in-process (SQLite) and `langgraph dev` (ARGS="--iterations 30")
	UV_PROJECT_ENVIRONMENT=$(TOOLS)/bench $(UV) run --locked --group bench --python $(PYTHON) \
		python -m tests.bench.langgraph_compare $(LANGGRAPH_ARGS)

bench-throughput: install ## Sustained turns: 200 sessions back to back for 60 s vs the bare workflow (ARGS="--sessions 20 --seconds 20")
	$(VENV)/bin/python -m tests.bench.throughput $(THROUGHPUT_ARGS)

bench-streams: install ## 5,000 SSE streams on one API process (memory) and one event to 1,000 subscribers (ARGS="--streams 500 --subscribers 100")
	$(VENV)/bin/python -m tests.bench.streams $(STREAMS_ARGS)

bench-processes: install ## 2 API + 2 worker processes under load, one worker killed mid-run, vs 1 + 1 (ARGS="--sessions 16 --seconds 20")
	$(VENV)/bin/python -m tests.bench.processes $(PROCESSES_ARGS)

bench-llm: install ## litellm's own cost per call over a raw HTTP request to the simulator, paired (ARGS="--iterations 300")
	$(VENV)/bin/python -m tests.bench.llm_overhead $(LLM_ARGS)

bench-events: install ## A step's event store (append_many + trace projection): CPU and wall per step (ARGS="--steps 300")
	$(VENV)/bin/python -m tests.bench.event_store $(ARGS)

bench-traces: install ## Trace store: 1M spans (10k traces via HTTP), then query p95s (ARGS="--spans 20000 --traces 2000")
	$(VENV)/bin/python -m tests.bench.trace_store $(TRACE_ARGS)

bench-knowledge: install ## /v2 knowledge: query p50/p95 over 100k chunks, embedding call excluded (ARGS="--chunks 20000")
	$(VENV)/bin/python -m tests.bench.knowledge $(ARGS)

bench-calls: install ## /v2/call overhead over a direct litellm call to the simulator (ARGS="--iterations 200")
	$(VENV)/bin/python -m tests.bench.v2_call $(ARGS)

bench-limits: install ## The rate limiter's added latency: the Lua call alone and requests with vs without (ARGS="--iterations 500")
	$(VENV)/bin/python -m tests.bench.rate_limit $(ARGS)

bench-webhooks: install ## Webhook throughput: deliveries/s from the outbox to a local receiver (ARGS="--deliveries 500 --rounds 3")
	$(VENV)/bin/python -m tests.bench.webhooks $(ARGS)

bench-console: install browser ## The console's chat page: time to interactive and compressed weight in chromium (ARGS="--iterations 20")
	$(VENV)/bin/python -m tests.bench.console $(ARGS)

lint: install ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lock: $(UV) ## Re-resolve uv.lock after changing dependencies in pyproject.toml
	$(UV) lock --python $(PYTHON)

clean: ## Remove the virtual environments and caches (not the data directory)
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
