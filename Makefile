# `make run` and `make test` set up .venv on first use, then do their job.
PYTHON ?= python3
# The tested torch release; `make run TORCH=torch` takes the newest instead.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.installed

.PHONY: run test test-fast lint data bench notebook clean

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: $(READY)  ## train BasicCNN with its full recipe on the real data, write its report
	$(BIN)/fashionbench train basic_cnn --report

# Two or more pytest-xdist workers, a test file to each: the suite's slow tests wait on
# subprocess start-up, torchrun and heartbeats, so one process leaves a core idle much of
# the time; a file's module fixtures (a trained run, a study) are then built once.
test: $(READY)  ## the whole test suite, on the real data
	$(BIN)/python -m pytest -n auto --dist loadfile

test-fast: $(READY)  ## the fast tier (under a minute): no real data, no subprocesses
	$(BIN)/python -m pytest -m "not slow"

lint: $(READY)  ## ruff, with the rules in pyproject.toml
	$(BIN)/ruff check src tests benchmarks experiments

data: $(READY)  ## download and verify the dataset
	$(BIN)/fashionbench data

bench: $(READY)  ## training throughput against a conventional DataLoader pipeline
	$(BIN)/python benchmarks/throughput.py

# The walkthrough at the full budget (three seeds of BasicCNN's recipe): the executed
# notebook and an HTML copy in runs/notebook, beside the runs it trains.
notebook: $(READY)  ## run notebooks/walkthrough.ipynb at the full budget into runs/notebook
	mkdir -p runs/notebook
	$(BIN)/jupyter nbconvert --to notebook --execute notebooks/walkthrough.ipynb \
		--ExecutePreprocessor.timeout=-1 --output-dir runs/notebook
	$(BIN)/jupyter nbconvert --to html runs/notebook/walkthrough.ipynb --output-dir runs/notebook

clean:
	rm -rf $(VENV) build dist src/*.egg-info
