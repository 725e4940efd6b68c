# The user's menu. Each target is a thin call into scripts/ or the yuxi-k8s CLI.
# `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV  := $(CURDIR)/.venv
BIN   := $(CURDIR)/bin
export PATH := $(BIN):$(VENV)/bin:$(PATH)
ENV      ?= dev

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- set-up ---------------------------------------------------------------
.PHONY: venv venv-validate tools tools-validate tools-scan schemas
VENV_INPUTS := pyproject.toml constraints.txt scripts/venv.sh tools/uv/requirements.txt
venv: $(VENV)/.stamp ## Create the Python venv with the package and its pinned dev tools (uv from PyPI)
$(VENV)/.stamp: $(VENV_INPUTS)
	scripts/venv.sh

venv-validate: $(VENV)/.stamp-validate ## Only what `make validate` needs in the venv (make venv adds the dev tools)
$(VENV)/.stamp-validate: $(VENV_INPUTS)
	scripts/venv.sh validate

# The stamp only spares a warm `make validate` the extra start-up: the check prepares whatever the
# cache lacks itself, so a cache emptied since costs time, never a wrong result.
schemas: $(VENV)/.stamp-schemas ## Prepare the pinned core and CRD schemas in the cache (fetches the CRDs once)
$(VENV)/.stamp-schemas: $(VENV)/.stamp-validate src/yuxi_k8s/validate/versions.py
	python -m yuxi_k8s.validate --prepare-schemas
	touch $@

tools-validate: ## Build the pinned kubeconform into bin/ (kustomize comes with the venv's kubectl)
	scripts/tools.sh kubeconform

tools-scan: ## Install the pinned checkov into its own venv, linked as bin/checkov (PyPI)
	scripts/tools.sh checkov

tools: ## Build every pinned binary (Kubernetes, etcd, containerd, ...) into bin/
	scripts/tools.sh all

# --- the main job ---------------------------------------------------------
.PHONY: validate scan render dev-secrets
dev-secrets: ## Write overlays/dev/app/{postgres,secrets,provider-keys}.env (random, git-ignored) if missing
	scripts/dev-secrets.sh

# The paths checked are listed once, in src/yuxi_k8s/validate/entry_points.txt (the tests read it too).
# Its set-up runs side by side: the venv then the schemas, beside the kubeconform build (Go).
# KIT_EXAMPLE: the kit's own example keeps placeholder images on purpose, which YK-IMG-006 refuses
# without --kit-example; in your fork, with your images set, `make validate KIT_EXAMPLE=` (or drop
# it here) so that a placeholder left behind fails the check.
KIT_EXAMPLE ?= --kit-example
validate: ## Render, schema-check and policy-check every overlay and GitOps entry point
	@$(MAKE) --no-print-directory -j3 schemas tools-validate dev-secrets
	python -m yuxi_k8s.validate --entry-points $(KIT_EXAMPLE)  # = yuxi-k8s validate, without loading the other concerns

scan: venv tools-scan dev-secrets ## checkov (an outside scanner) on the rendered staging and prod overlays
	scripts/scan.sh

render: venv dev-secrets ## Print the rendered manifests of one overlay: make render ENV=prod
	kubectl kustomize overlays/$(ENV)

# --- tests ----------------------------------------------------------------
.PHONY: test test-static test-db test-cluster lint
test: ## Run every test tier (static, db, cluster); sets up all it needs
	scripts/test.sh

test-static: venv tools-validate tools-scan ## Only the static tier (render + policy rules)
	scripts/test.sh -m static

test-db: ## Only the db tier (real PostgreSQL and Redis)
	scripts/test.sh -m db

test-cluster: ## Only the cluster tier (smoke and end-to-end on a real cluster)
	scripts/test.sh -m cluster

lint: venv ## ruff and mypy over the package and tests
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks
	mypy src

# --- services and cluster -------------------------------------------------
.PHONY: services-up services-down cluster-up cluster-down cluster-status
services-up: venv ## Start the loopback PostgreSQL and Redis the db tests use (the tests start them too)
	scripts/services.sh up

services-down: ## Stop them
	scripts/services.sh down

cluster-up: venv tools ## Start a real single-node cluster from the pinned binaries (root, Linux)
	scripts/cluster.sh up

cluster-down: ## Remove everything cluster-up created
	scripts/cluster.sh down

cluster-status: ## Show what runs and whether the node is Ready
	scripts/cluster.sh status

# --- application images ---------------------------------------------------
.PHONY: images
images: venv ## Build the application's images from its pinned source (root): make images [SOURCE=tarball|folder|URL]
	yuxi-k8s images build $(if $(SOURCE),--source $(SOURCE))

# --- benchmarks -----------------------------------------------------------
.PHONY: bench
bench: venv tools-validate ## Run the benchmarks; each prints ratios against a baseline from the same run
	scripts/bench.sh
