# One entry point for people and CI: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test check lint typecheck imports unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Everything the simulation needs (runtime extras only).
$(VENV)/.app: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[all]'
	touch $@

# Plus the development tools (a PEP 735 dependency group, not a runtime extra).
$(VENV)/.dev: $(VENV)/.app
	$(PIP) install -q --group dev
	touch $@

demo: $(VENV)/.app
	$(BIN)/wattmesh simulate --households 20 --days 2 --seed 1 --report out/report.json

test: $(VENV)/.dev
	scripts/ensure-mosquitto
	scripts/ensure-chromium
	$(MAKE) check

check: lint typecheck imports unit

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

imports:
	$(BIN)/lint-imports

unit:
	$(BIN)/pytest

bench: $(VENV)/.dev
	$(BIN)/python bench/bench_gate_closure.py
	$(BIN)/python bench/bench_ingest_mqtt.py
	$(BIN)/python bench/bench_simulate.py
	$(BIN)/python bench/bench_settlement.py
	$(BIN)/python bench/bench_mechanisms.py
	$(BIN)/python bench/bench_p1.py
	$(BIN)/python bench/bench_agent_footprint.py
	$(BIN)/python bench/bench_agent_imports.py
	$(BIN)/python bench/bench_outbox_wear.py
	$(BIN)/python bench/bench_outbox_outage.py
	$(BIN)/python bench/bench_outbox_backfill.py
	$(BIN)/python bench/bench_verify.py
	$(BIN)/python bench/bench_restart.py
	$(BIN)/python bench/bench_ledger_memory.py
	$(BIN)/python bench/bench_forecast_scale.py
	$(BIN)/python bench/bench_proofs.py
	$(BIN)/python bench/bench_receipts.py
	$(BIN)/python bench/bench_flood.py
	$(BIN)/python bench/bench_dashboard.py --postgres
	$(BIN)/python bench/bench_dashboard_ws.py
	$(BIN)/python bench/bench_forecast_backtest.py

clean:
	rm -rf $(VENV) out .mypy_cache .pytest_cache .ruff_cache .hypothesis
