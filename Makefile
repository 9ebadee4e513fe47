# `make run` and `make test` set up .venv on first use, then do their job.
PYTHON ?= python3
# The tested torch release; `make run TORCH=torch` takes the newest instead.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.installed

.PHONY: run basic-cnn test test-fast lint data bench notebook results tables report-picture clean

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# The main job answers in minutes: the speedrun recipe for its 300-second budget, one
# seed, then its report. BasicCNN's full recipe (30 epochs) is `make basic-cnn`.
RUN_OPTIONS ?= --budget 300 --seeds 1 --report
run: $(READY)  ## train the speedrun recipe for 300 s on the real data, write its report
	$(BIN)/fashionbench speedrun $(RUN_OPTIONS)

basic-cnn: $(READY)  ## train BasicCNN with its full recipe on the real data, write its report
	$(BIN)/fashionbench train basic_cnn --report

# Two or more pytest-xdist workers, a test file to each: the suite's slow tests wait on
# subprocess start-up, torchrun and heartbeats, so one process leaves a core idle much of
# the time; a file's module fixtures (a trained run, a study) are then built once. The
# files start in the order tests/conftest.py collects them, the longest first.
test: $(READY)  ## the whole test suite, on the real data
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder

test-fast: $(READY)  ## the fast tier (under a minute): no real data, no subprocesses
	$(BIN)/python -m pytest -m "not slow"

lint: $(READY)  ## ruff, with the rules in pyproject.toml
	$(BIN)/ruff check src tests benchmarks experiments

data: $(READY)  ## download and verify the dataset
	$(BIN)/fashionbench data

bench: $(READY)  ## training throughput against a conventional DataLoader pipeline
	$(BIN)/python benchmarks/throughput.py

# The runs behind the README's tables, on this machine's CPU (hours: every run is
# resumable, finished ones are kept, so stopping and rerunning loses at most an epoch),
# then the tables written from the records. The speedrun's timed records are made
# apart, alone on the machine (docs/benchmarks.md); the six large models on a GPU
# (benchmarks/gpu_table.py). Robustness is measured for each run whose weights are here
# (a record committed without them is kept as it is). Then the reference protocol's rows
# and their two checks (Keras' initialisation; all 60,000 images, one MiniVGG seed).
ENSEMBLE := results/table/ensembles/basic_cnn-x3
ALL_IMAGES := results/reference_protocol_60k/mini_vgg-s0
results: $(READY)  ## rerun the CPU runs behind the published tables (and their robustness) into results/, then write the tables
	$(BIN)/fashionbench reproduce --models basic_cnn,mini_vgg --seeds 0,1,2 --out results/table
	test -f $(ENSEMBLE)/summary.json || $(BIN)/fashionbench ensemble results/table/runs/basic_cnn-s0 \
		results/table/runs/basic_cnn-s1 results/table/runs/basic_cnn-s2 --out $(dir $(ENSEMBLE)) --name $(notdir $(ENSEMBLE))
	for run in results/table/runs/*/; do test -f $$run/robustness.json || ! test -f $$run/model.pt || \
		$(BIN)/fashionbench robustness $$run || exit 1; done
	$(BIN)/fashionbench reproduce --protocol reference --seeds 0,1,2 --out results/reference_protocol
	$(BIN)/python experiments/keras_defaults.py --models mini_vgg,basic_cnn --seeds 0,1,2
	test -f $(ALL_IMAGES)/summary.json || { test -d $(ALL_IMAGES) && $(BIN)/fashionbench train --resume $(ALL_IMAGES); } || \
		$(BIN)/fashionbench train --config recipes/reference/mini_vgg.yaml --set data.val_size=10 --seed 0 \
		--out $(dir $(ALL_IMAGES)) --name $(notdir $(ALL_IMAGES))
	$(MAKE) tables

# The README's picture of the report: the report of the last `make run` that
# benchmarks/make_run.py timed (kept with --keep DIR; its record is in
# results/benchmarks/make_run/run), as headless Chromium shows it.
KEPT ?= /tmp/made
report-picture:  ## the README's picture of the report, from a run folder make_run.py kept
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,1290 \
		--screenshot=$(CURDIR)/docs/images/report.png $(KEPT)/seed-0/report/report.html

tables: $(READY)  ## write the README's (and the docs') generated tables from the records under results/
	$(BIN)/python -m fashionbench.published

# The walkthrough at the full budget (three seeds of BasicCNN's recipe): the executed
# notebook and an HTML copy in runs/notebook, beside the runs it trains.
notebook: $(READY)  ## run notebooks/walkthrough.ipynb at the full budget into runs/notebook
	mkdir -p runs/notebook
	$(BIN)/jupyter nbconvert --to notebook --execute notebooks/walkthrough.ipynb \
		--ExecutePreprocessor.timeout=-1 --output-dir runs/notebook
	$(BIN)/jupyter nbconvert --to html runs/notebook/walkthrough.ipynb --output-dir runs/notebook

clean:
	rm -rf $(VENV) build dist src/*.egg-info
