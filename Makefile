# Quickstart: `make run` (the main job, offline) and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test venv clean

venv: $(STAMP)

# torch/torchvision pinned to the builds this project supports (they install from local
# disk on the project's machines); everything else comes from pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job: every kind of selector on the offline digits set, 2 seeds, a mid-size ViT;
# about 5 minutes on 2 CPU cores. Prints the table; writes results/digits/ (JSON, CSV, PNG).
# --resume: a second `make run` (or one after Ctrl-C) keeps the finished runs.
# agentvit keeps the paper's schedule relative to the run: CIFAR-10 has 390 batches an
# epoch, rewarded every 50th (7 per epoch), eps decaying over 20000 of ~39000 iterations;
# digits at batch 32 has 44, so every 6th batch and eps_decay 450 of ~880 iterations.
run: $(STAMP)
	$(PY) -m benchmarks.compare_selectors --dataset digits --preset small --epochs 20 --seeds 0,1 \
		--selectors all,random,agentvit:frequency=6:eps_decay=450,norm_topk --device cpu --out results/digits --resume

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) results runs
