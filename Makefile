# Everything runs from .venv, created on first use and reused after.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_DEMO := $(VENV)/.installed-demo
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test lint typecheck bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	$(BIN)/cost-guard demo

lint: $(STAMP_TEST)
	$(BIN)/ruff check guard migrations tests bench
	$(BIN)/ruff format --check guard migrations tests bench
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q -n 4 --dist load

# Build the Dockerfile with buildah and run the image with podman (no Docker engine needed);
# see deploy/image-test.sh. Needs root; installs buildah/podman/debootstrap if missing.
.PHONY: image-test
image-test: $(STAMP_DEMO)
	bash deploy/image-test.sh

# `make bench`: the fleet of every kind over 2 accounts (BENCH_ARGS, e.g. --resources 10000),
# issue 15's fleet (4,000 notebooks, 2,000 endpoints, 4,000 jobs), then an organisation of 200
# member accounts x 2 regions and the memory at 10,000 / 50,000 resources
ORG_BENCH_ARGS ?= --org 200 --org-resources 4000 --memory 10000,50000
bench: $(STAMP_TEST)
	$(BIN)/python -m bench.cycle_bench $(BENCH_ARGS)
	$(BIN)/python -m bench.cycle_bench --mix issue-15 --skip-naive
	$(BIN)/python -m bench.cycle_bench $(ORG_BENCH_ARGS)
	$(BIN)/python -m bench.backtest_bench

# 1,000+ cycles under random AWS / Slack / SIGKILL / database faults (bench/chaos.py; needs the
# local Postgres like `make test`, about 10 minutes). Not part of `make test`.
chaos: $(STAMP_TEST)
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The Lambda deployment package (deploy/lambda/template.yaml's CodeUri): the package (with its
# Alembic migrations, installed as guard/migrations) and its dependencies as manylinux x86_64 /
# CPython 3.11 wheels, without the demo extras.
LAMBDA_BUILD := build/lambda
# LAMBDA_CONFIG: the config file copied into the zip as /var/task/cost-guard.yaml.
# Bytecode is compiled unchecked-hash: /var/task is read-only and zip times are coarse.
LAMBDA_CONFIG ?= cost-guard.yaml
.PHONY: lambda-zip
lambda-zip: | $(BIN)/python
	rm -rf $(LAMBDA_BUILD)/package $(LAMBDA_BUILD)/wheel $(LAMBDA_BUILD)/cost-guard-lambda.zip
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(LAMBDA_BUILD)/wheel .
	$(BIN)/pip install --quiet --target $(LAMBDA_BUILD)/package \
		--platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.11 --implementation cp \
		$(LAMBDA_BUILD)/wheel/*.whl
	@if [ -f "$(LAMBDA_CONFIG)" ]; then cp "$(LAMBDA_CONFIG)" $(LAMBDA_BUILD)/package/cost-guard.yaml; \
		echo "config: $(LAMBDA_CONFIG) -> /var/task/cost-guard.yaml"; \
	else echo "note: no $(LAMBDA_CONFIG): deploy with ConfigFile='' (environment and defaults only)"; fi
	find $(LAMBDA_BUILD)/package -name __pycache__ -type d -prune -exec rm -rf {} +
	$(BIN)/python -m compileall -q -j 0 --invalidation-mode unchecked-hash $(LAMBDA_BUILD)/package
	$(BIN)/python -c "import shutil; shutil.make_archive('$(LAMBDA_BUILD)/cost-guard-lambda', 'zip', '$(LAMBDA_BUILD)/package')"
	@$(BIN)/python -c "import zipfile, os; p = '$(LAMBDA_BUILD)/cost-guard-lambda.zip'; z = zipfile.ZipFile(p); \
		print(f'{p}: {os.path.getsize(p) / 2**20:.1f} MiB zipped, {sum(i.file_size for i in z.infolist()) / 2**20:.1f} MiB unzipped (Lambda limit: 250 MB unzipped)')"

# Rebuild guard/data/prices.csv from a downloaded AWS Price List bulk offer file for SageMaker
# (https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/index.json
# or index.csv): every on-demand hourly ml. price of every region and component, each row naming
# the offer file and its publication date; rows the offer lacks keep their own source.
.PHONY: prices
prices: | $(BIN)/python
	@test -n "$(OFFER)" || { echo "usage: make prices OFFER=path/to/index.json"; exit 2; }
	$(BIN)/python -m guard.offer_file "$(OFFER)" --table guard/data/prices.csv

# Rewrite the IAM blocks of deploy/lambda/template.yaml and deploy/iam/member-account-role.yaml
# from guard.iam.policy (the kind registry); tests/test_iam_drift.py fails until this has run.
.PHONY: iam
iam: | $(BIN)/python
	$(BIN)/python -m guard.iam_templates
