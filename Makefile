# meshvpn: `make up` deploys a lab mesh with Ansible (`make down` removes it), `make test` runs
# the tests. Both install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
NODES ?= 5

.PHONY: setup up down test test-fast bench clean diagrams

$(BIN)/meshctl: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/meshctl
	./scripts/install-system-packages

up: setup
	./scripts/up $(NODES)

down:
	./scripts/down

test: setup
	$(BIN)/python -m pytest -q
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s default
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s faults

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python bench/control_scale.py

clean: down
	rm -rf $(VENV) dist

diagrams:
	for f in docs/diagrams/*.dot; do dot -Tsvg "$$f" -o "$${f%.dot}.svg"; done
