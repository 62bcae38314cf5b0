# The front door. `make dev` and `make test` are the two commands a new machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv tools dev test lint typecheck unit e2e bench manifests manifests-check \
        lock lock-upgrade lock-check sbom workflow-lint helm-lint image kind-e2e clean mutation

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# The runtime dependencies come from the lock, hash-checked, as in the image: the tests run the
# versions that ship. The dev tools resolve from their ranges, constrained by the lock (its pins
# without the hashes, which pip cannot check for an editable install) so none of them can move
# a runtime pin. README.md, "Locked dependencies", says why.
$(STAMP): pyproject.toml requirements.lock
	@echo "==> creating $(VENV): the locked runtime, then provenance-controller and its dev tools"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q --require-hashes --only-binary :all: --no-deps -r requirements.lock
	@sed -n 's/^\([A-Za-z0-9][^ ]*==[^ ]*\)\( ;[^\\]*\)\{0,1\}.*/\1\2/p' requirements.lock >$(VENV)/constraints.txt
	@$(PY) -m pip install -q -c $(VENV)/constraints.txt -e '.[dev]'
	@touch $@

venv: $(STAMP) ## the Python virtualenv in .venv

tools: ## build etcd, kube-apiserver, kubectl, cosign, crane, helm, actionlint and the local Sigstore (fulcio, tesseract, rekor-tiles, timestamp-authority) into bin/ (cached), install docker-registry
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

lock: venv ## re-lock requirements.lock and requirements-build.lock after editing pyproject.toml
	@bash hack/lock.sh

lock-upgrade: venv ## move the lock to the newest versions pyproject.toml's ranges allow
	@bash hack/lock.sh --upgrade

lock-check: venv ## fail when the locks are stale against pyproject.toml
	@echo "==> requirements.lock up to date with pyproject.toml"
	@bash hack/lock.sh --check

SBOM ?= sbom.cdx.json
sbom: venv ## a CycloneDX SBOM of the image's Python environment, into $(SBOM)
	@bash hack/sbom.sh $(SBOM)

workflow-lint: ## actionlint over .github/workflows
	@echo "==> actionlint"
	@bash hack/tools.sh actionlint
	@command -v shellcheck >/dev/null || { echo "shellcheck is missing (hack/tools.sh installs it)"; exit 1; }
	@bin/actionlint -no-color -shellcheck="$$(command -v shellcheck)"

# pytest exits 5 when it collected nothing: that is a broken test tree, never a pass.
unit: venv ## tests that need no API server (the registry and cosign tests still run their real binaries)
	@bash hack/tools.sh registry,cosign,crane,helm,referrers-registry
	@$(VENV)/bin/pytest -m "not e2e" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test: venv tools lint typecheck manifests-check lock-check workflow-lint ## everything CI runs: tools, lint, types, generated files, the lock, the workflows, all tests
	@echo "==> pytest (unit and end-to-end)"
	@$(VENV)/bin/pytest -ra $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

mutation: venv ## mutmut over the security-relevant modules, unit tests only; prints the score (not in make test)
	@bash hack/tools.sh registry,cosign,referrers-registry
	@bash hack/mutation.sh

bench: venv ## every benchmark under bench/, each with its same-run baseline (prints figures; not a test)
	@bash hack/tools.sh control-plane,registry,cosign
	@for b in admission signatures ledger ledger_cost kinds keyless status; do \
	  if [ -f bench/bench_$$b.py ]; then echo "==> bench/bench_$$b.py"; $(PY) bench/bench_$$b.py || exit 1; fi; \
	done

helm-lint: ## helm lint the chart
	@bash hack/tools.sh helm
	@bin/helm lint charts/provenance-controller

image: ## build the container image with its provenance labels (needs Docker)
	@bash hack/image.sh

kind-e2e: ## for users with Docker: kind cluster, helm install, end-to-end tests against it
	@bash hack/kind-e2e.sh

clean: ## remove the venv, bin/ and .dev/ (the build cache in ~/.cache stays)
	rm -rf $(VENV) bin .dev
