# Thin entry points: the scripts do the work, the Makefile names it.
# `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup demo test test-unit test-integration test-monitoring test-charts \
        test-ci test-images test-cluster test-ansible e2e dashboards lint format bench load image cluster-up \
        cluster-down deploy-local clean

help: ## list the targets
	@grep -hE '^[A-Za-z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## create .venv (cached outside the tree) with the pinned Python packages
	@bash scripts/setup-python.sh

demo: setup ## run MLflow, train + promote a model, serve it under gunicorn (Ctrl-C stops all)
	@bash scripts/demo.sh

test: setup ## the whole suite, as CI runs it (installs what it needs)
	@bash scripts/test.sh all

test-unit: setup ## fast tests: no servers
	@bash scripts/test.sh unit

test-ci: setup ## the GitHub Actions workflows: actionlint, gating, every step a repository command
	@bash scripts/test.sh ci

test-integration: setup ## real MLflow server + real gunicorn
	@bash scripts/test.sh integration

test-monitoring: setup ## promtool, dashboards, real Prometheus scraping the service
	@bash scripts/test.sh monitoring

test-charts: setup ## helm lint/template, kubeconform, kube-linter, template unit tests
	@bash scripts/test.sh charts

test-images: setup ## build the images with podman and run the service container
	@bash scripts/test.sh images

test-cluster: setup ## a real single-node Kubernetes cluster comes up and works
	@bash scripts/test.sh cluster

e2e: setup ## the whole stack on the local cluster
	@bash scripts/test.sh e2e

test-ansible: setup ## site.yml on the local cluster from nothing, EKS on moto, lint/specs of every inventory
	@bash scripts/test.sh ansible

lint: setup ## ruff + mypy
	@bash scripts/lint.sh

format: setup ## ruff format + autofix
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .

bench: setup ## side-by-side serving benchmark (writes bench/results/)
	@bash bench/run.sh

load: setup ## headless load test with a leak verdict (PROFILE=steady|spike|drift)
	@bash scripts/load.sh $(PROFILE)

dashboards: setup ## regenerate the Grafana dashboard JSON from monitoring/dashboard.py
	@.venv/bin/python monitoring/dashboard.py

image: ## build the service and MLflow images with podman or docker
	@bash scripts/build-images.sh

cluster-up: ## start the local single-node Kubernetes cluster (kubeconfig: see README)
	@bash cluster/up.sh

cluster-down: ## stop the local cluster and remove everything it made
	@bash cluster/down.sh

deploy-local: setup ## both charts + a registered model on the local cluster (after cluster-up, image)
	@bash cluster/deploy.sh

clean: ## remove local state (not the caches)
	rm -rf .demo .pytest_cache .mypy_cache .ruff_cache
