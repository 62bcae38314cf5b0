# The front door. `make dev` and `make test` are the two commands a new machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv tools dev test lint typecheck unit e2e bench manifests manifests-check \
        helm-lint image kind-e2e clean mutation

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing provenance-controller with its dev dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP) ## the Python virtualenv in .venv

tools: ## build etcd, kube-apiserver, kubectl, cosign, crane, helm into bin/ (cached), install docker-registry
	@bash hack/tools.sh all

dev: venv ## a local control plane with the controller wired in; two sample Deployments; Ctrl-C stops
	@bash hack/tools.sh control-plane
	@$(PY) -m controller.dev $(if $(CONFIG),--config $(CONFIG))

lint: venv ## ruff
	@echo "==> ruff"
	@$(VENV)/bin/ruff check controller tests bench

typecheck: venv ## mypy --strict
	@echo "==> mypy --strict"
	@$(VENV)/bin/mypy

manifests: ## re-render manifests/ from the chart with default values
	@bash hack/render-manifests.sh

manifests-check: ## fail when manifests/ is stale
	@echo "==> manifests/ up to date with the chart"
	@bash hack/render-manifests.sh
	@git diff --exit-code -- manifests/ || { echo "manifests/ is stale: run 'make manifests' and commit"; exit 1; }

# pytest exits 5 when it collected nothing: that is a broken test tree, never a pass.
unit: venv ## tests that need no API server (the registry and cosign tests still run their real binaries)
	@bash hack/tools.sh registry,cosign,crane,helm,referrers-registry
	@$(VENV)/bin/pytest -m "not e2e" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test: venv tools lint typecheck manifests-check ## everything CI runs: tools, lint, types, manifests, all tests
	@echo "==> pytest (unit and end-to-end)"
	@$(VENV)/bin/pytest -ra $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

mutation: venv ## mutmut over the security-relevant modules, unit tests only; prints the score (not in make test)
	@bash hack/tools.sh registry,cosign,referrers-registry
	@bash hack/mutation.sh

bench: venv ## admission, signature and ledger benchmarks (prints figures; not a test)
	@bash hack/tools.sh control-plane,registry,cosign
	@$(PY) bench/bench_admission.py
	@if [ -f bench/bench_signatures.py ]; then $(PY) bench/bench_signatures.py; fi
	@if [ -f bench/bench_ledger.py ]; then $(PY) bench/bench_ledger.py; fi

helm-lint: ## helm lint the chart
	@bash hack/tools.sh helm
	@bin/helm lint charts/provenance-controller

image: ## build the container image with its provenance labels (needs Docker)
	@bash hack/image.sh

kind-e2e: ## for users with Docker: kind cluster, helm install, end-to-end tests against it
	@bash hack/kind-e2e.sh

clean: ## remove the venv, bin/ and .dev/ (the build cache in ~/.cache stays)
	rm -rf $(VENV) bin .dev
