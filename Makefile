# meshvpn: `make up` deploys a lab mesh with Ansible (`make down` removes it; `make up TOPOLOGY=sites`
# puts nodes in routed and NAT sites; `make up CONTROLS=2` runs two control hosts sharing PostgreSQL
# on a db host), `make lint` runs the linters, `make test` runs them and then the tests. All install
# what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
NODES ?= 5
TOPOLOGY ?= single
CONTROLS ?= 1

.PHONY: setup up down lint test test-fast bench clean diagrams

$(BIN)/meshctl: requirements.txt requirements/*.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/meshctl
	./scripts/install-system-packages

up: setup
	./scripts/up $(NODES) $(TOPOLOGY) $(CONTROLS)

down:
	./scripts/down

# Every linter runs (ansible-lint offline, see .ansible-lint); lint fails if any of them found something.
LINTERS := "ruff check ." "mypy" "lint-imports" "ansible-lint site.yml playbooks/ roles/"
lint: $(BIN)/meshctl
	@failed=""; for linter in $(LINTERS); do \
		echo "== $$linter"; PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/$$linter || failed="$$failed, $$linter"; \
	done; \
	if [ -n "$$failed" ]; then echo "lint failed: $${failed#, }"; exit 1; fi

test: setup lint
	$(BIN)/python -m pytest -q
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s default
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s ha

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Every benchmark, one after the other (each writes bench/results/<name>-<run id>.json); about
# an hour on a quiet 2-core machine. Run it on a machine doing nothing else: the figures say so.
bench: setup
	$(BIN)/python bench/control_scale.py
	$(BIN)/python bench/agent_idle.py
	$(BIN)/python bench/agent_apply.py
	$(BIN)/python bench/dataplane.py
	$(BIN)/python bench/convergence.py --nodes 50
	$(BIN)/python bench/plot_control_scale.py bench/results/control_scale-*.json

clean: down
	rm -rf $(VENV) dist

diagrams:
	for f in docs/diagrams/*.dot; do dot -Tsvg "$$f" -o "$${f%.dot}.svg"; done
