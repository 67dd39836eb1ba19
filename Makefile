# meshvpn: `make up` deploys a lab mesh with Ansible (`make down` removes it; `make up TOPOLOGY=sites`
# puts nodes in routed and NAT sites; `make up CONTROLS=2` runs two control hosts sharing PostgreSQL
# on a db host; `make up LAB=vm [NODES=3]` deploys on Debian VMs with systemd and kernel WireGuard,
# `make down LAB=vm` removes them), `make demo` builds a lab of its own and runs the whole story narrated (join, crash,
# restart, cut, control plane down, leave), writing demo/out/timeline.{jsonl,html} and asbuilt.svg
# (`make demo KEEP=1` leaves its lab up, `make demo-down` removes it), `make lint` runs the linters,
# `make test` runs them and then the tests. All install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
NODES ?= 5
TOPOLOGY ?= single
CONTROLS ?= 1
LAB ?= namespaces
# The VM lab's nodes: NODES when given, else 3 (each VM is a QEMU guest in software emulation).
VM_NODES = $(if $(filter command line environment,$(origin NODES)),$(NODES),3)
# The chaos soak's nodes: NODES when given, else 8.
CHAOS_NODES = $(if $(filter command line environment,$(origin NODES)),$(NODES),8)

.PHONY: setup up down demo demo-down lint test test-vm test-fast chaos bench clean diagrams

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
ifeq ($(LAB),vm)
	./scripts/up-vm $(VM_NODES)
else
	./scripts/up $(NODES) $(TOPOLOGY) $(CONTROLS)
endif

down:
ifeq ($(LAB),vm)
	$(BIN)/python -m testbed.vmlab down
else
	./scripts/down
endif

# The demo's lab is its own (namespaces mvdemo-*, 10.213.90.0/24, .lab-demo/): make up's lab is never touched.
DEMO_LAB := -e meshvpn_lab_prefix=mvdemo -e meshvpn_lab_subnet=10.213.90 \
	-e meshvpn_lab_dir=$(CURDIR)/.lab-demo -e meshvpn_lab_inventory=$(CURDIR)/.lab-demo/hosts.yml
demo: setup
	$(BIN)/python -m demo.run --prefix mvdemo --subnet 10.213.90 --lab-dir .lab-demo $(if $(filter 1 yes true,$(KEEP)),--keep)

demo-down:
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-playbook playbooks/lab_destroy.yml $(DEMO_LAB)

# Every linter runs (ansible-lint offline, see .ansible-lint); lint fails if any of them found something.
LINTERS := "ruff check ." "mypy" "mypy -p demo" "lint-imports" "lint-imports --config demo/.importlinter" \
	"ansible-lint site.yml playbooks/ roles/"
lint: $(BIN)/meshctl
	@failed=""; for linter in $(LINTERS); do \
		echo "== $$linter"; PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/$$linter || failed="$$failed, $$linter"; \
	done; \
	if [ -n "$$failed" ]; then echo "lint failed: $${failed#, }"; exit 1; fi

# pytest (its 25 slowest tests named at the end), molecule's namespace scenarios (userspace WireGuard,
# supervisord), then the VM scenario (molecule/vm: Debian VMs, systemd, kernel WireGuard, the faults;
# about 27 minutes under software emulation on a 2-core machine, 2 more to build its image once).
test: setup lint
	$(BIN)/python -m pytest -q --durations=25
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s default
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s ha
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s vm

# The VM scenario alone.
test-vm: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s vm

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# The chaos soak (testbed/chaos, namespace lab): faults drawn from SEED combined, the mesh checked
# against its invariants every second for DURATION s; exit 1 on a violation, with the replay command.
# CONTROLS=2: two control instances sharing a PostgreSQL server of the run's own (and their faults);
# KINDS=a,b: only these fault kinds. LAB=ns (the default, also LAB=namespaces): the namespace lab.
# The report: REPORT, default build/chaos/report-SEED.json (the run's logs beside it).
chaos: setup
ifeq ($(LAB),vm)
	@echo "make chaos: the VM lab is not supported yet (LAB=ns, the namespace lab)"; exit 2
endif
	$(BIN)/python -m testbed.chaos --seed $(or $(SEED),1) --duration $(or $(DURATION),600) \
		--nodes $(CHAOS_NODES) --controls $(CONTROLS) $(if $(REPORT),--report $(REPORT)) \
		$(if $(filter command line environment,$(origin KINDS)),--kinds "$(KINDS)")

# Every benchmark, one after the other (each writes bench/results/<name>-<run id>.json); about
# an hour on a quiet 2-core machine. Run it on a machine doing nothing else: the figures say so.
bench: setup
	$(BIN)/python bench/control_scale.py
	$(BIN)/python bench/agent_idle.py
	$(BIN)/python bench/agent_apply.py
	$(BIN)/python bench/dataplane.py
	$(BIN)/python bench/convergence.py --nodes 50
	$(BIN)/python bench/stream_churn.py
	$(BIN)/python bench/proxy_memory.py
	$(BIN)/python bench/revision_flood.py
	$(BIN)/python bench/plot_control_scale.py bench/results/control_scale-*.json

clean: down
	rm -rf $(VENV) dist

diagrams:
	for f in docs/diagrams/*.dot; do dot -Tsvg "$$f" -o "$${f%.dot}.svg"; done
