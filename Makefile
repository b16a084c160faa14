# Quickstart: `make run` (the main job, offline) and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The pure-Python wheels a bare GPU box lacks (it has torch & co. but no gymnasium/SB3 and
# no network): `make wheels` here, then carry .wheels/ with the checkout. The versions are
# .venv's (pip show); `wheel` gives setuptools older than 70.1 the bdist_wheel command an
# editable install needs.
WHEELS := .wheels
WHEEL_PINS := gymnasium==1.4.0 farama-notifications==0.0.6 stable-baselines3==2.9.2 wheel==0.45.1 \
	timm==1.0.31
BENCH_GPU_ARGS ?=
BENCH_GPU_POPULATION_ARGS ?=
BENCH_GPU_SUITE_ARGS ?=
# BENCH_GPU_QUICK=1: the same commands at smoke-test size on the CPU (the recipe's check).
BENCH_GPU_QUICK ?=
# Where the device run writes: reports/device-<date>-<card> (evaluated only by bench-gpu).
BENCH_GPU_OUT ?= reports/device-$(shell date +%Y-%m-%d)-$(shell $(PYTHON) -c "import torch, re; \
	print(re.sub(r'[^A-Za-z0-9]+', '-', torch.cuda.get_device_name(0)).strip('-').lower() if torch.cuda.is_available() else 'cpu')")
# Fashion-MNIST for the device's suite: Debian's files, carried in a git-ignored folder.
FMNIST_CARRY := data/FashionMNIST/raw
BENCH_GPU_POPULATION_SIZES := --presets tiny,small --num-envs 1,2,4,8,16,32,64
BENCH_GPU_SUITE_QUICK := --seeds 0 --selectors all,random

.PHONY: run test venv clean wheels carry-fmnist bench-gpu bench-fmnist bench-fmnist-p2 bench-fmnist-long

venv: $(STAMP)

# torch/torchvision pinned to the builds this project supports (they install from local
# disk on the project's machines); everything else comes from pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[test,integrations]"
	touch $(STAMP)

# The main job: every kind of selector on the offline digits set, 3 seeds (the fewest a
# confidence interval can be read from), a mid-size ViT; under 9 min on 2 idle CPU cores.
# Prints the compact table; writes results/digits/ (JSON, CSV, the full table in results.md,
# PNG).
# --resume: a second `make run` (or one after Ctrl-C) keeps the finished runs.
# agentvit keeps the paper's schedule relative to the run: CIFAR-10 has 390 batches an
# epoch, rewarded every 50th (7 per epoch), eps decaying over 20000 of ~39000 iterations;
# digits at batch 32 has 44, so every 6th batch and eps_decay 450 of ~880 iterations.
# --cpus-per-run 2: each run on two torch threads, as its table in docs/results was measured (a
# run's thread count is --cpus-per-run, default 1, so its numbers do not depend on the machine).
run: $(STAMP)
	$(PY) -m benchmarks.compare_selectors --dataset digits --preset small --epochs 20 --seeds 0,1,2 \
		--selectors all,random,agentvit:frequency=6:eps_decay=450,norm_topk --device cpu --cpus-per-run 2 \
		--out results/digits --resume

# The standard offline comparison to quote (benchmarks/suites.py): Fashion-MNIST from
# Debian's dataset-fashion-mnist, tiny ViT, 10 epochs' FLOPs of `all` for every selector
# (equal-flops), 5 seeds, every built-in selector; about 3 hours on one core.
# --resume: a second call (or one after Ctrl-C) continues it.
bench-fmnist: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.compare_selectors --suite fmnist --resume

# The second suite (2x2 patches, N = 196 tokens), two runs side by side on a 2-core machine.
bench-fmnist-p2: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.compare_selectors --suite fmnist-p2 --backend ray --cpus-per-run 1 --resume

# Time to a converged target (87.26% validation accuracy): every run, `all` included, stops
# on reaching it, interleaved epoch by epoch from the start; about 4 hours on one core
# (docs/benchmarks.md says how to split the seeds over two processes).
bench-fmnist-long: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.compare_selectors --suite fmnist-long --resume

# One pytest-xdist worker per core (the tests run one torch thread each), at most 4: past
# that the longest group of tests (the Ray module, on one worker) sets the time, and each
# worker holds its own torch. --dist loadgroup keeps the tests of a module that shares a
# module-scoped fixture on one worker (tests/conftest.py groups them): built once, and never
# two private Rays at a time. PYTEST_ARGS: more options, e.g. PYTEST_ARGS="-n 0" for one process.
PYTEST_ARGS ?=
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadgroup $(PYTEST_ARGS)

# As py3-none-any wheels, without their dependencies (torch, numpy, ... are on the GPU box).
wheels:
	mkdir -p $(WHEELS)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --dest $(WHEELS) $(WHEEL_PINS)
	@ls $(WHEELS)/*.whl

# Fashion-MNIST's four files into data/ (git-ignored), to carry to a device with the checkout.
carry-fmnist:
	mkdir -p $(FMNIST_CARRY)
	cp /usr/share/datasets/fashion-mnist/*-ubyte.gz $(FMNIST_CARRY)/

# On a bare GPU box, with its python3 (not .venv): install the carried wheels if gymnasium
# is missing, then the project in editable mode if no patchenv is installed (no build
# isolation: no network to fetch setuptools), then, into $(BENCH_GPU_OUT):
# - the device report (CUDA tests, step times, env overhead, timm's PatchDropout peer,
#   profile, AgentViT, epochs, compiled steps; ~5 min on an H100);
# - benchmarks.population for tiny and small at E = 1..64, with the host profile;
# - the Fashion-MNIST suite for one epoch with --population, when the data is there
#   (make carry-fmnist where it is installed, and carry data/).
# Where pip refuses (an externally managed python), the wheels are unpacked into
# .wheels/site instead; the checkout always runs first on PYTHONPATH, so an existing
# install of another checkout is neither used nor changed.
# Check the recipe on a CPU: make bench-gpu PYTHON=.venv/bin/python BENCH_GPU_QUICK=1
bench-gpu:
	@if $(PYTHON) -c "import gymnasium, stable_baselines3" 2>/dev/null; then \
		echo "bench-gpu: gymnasium and stable-baselines3 found"; \
	elif ! ls $(WHEELS)/*.whl >/dev/null 2>&1; then \
		echo "bench-gpu: ERROR: $(PYTHON) cannot import gymnasium/stable-baselines3 and $(WHEELS)/ holds no wheels." >&2; \
		echo "bench-gpu: run 'make wheels' where the package registry is reachable, and carry $(WHEELS)/ with the checkout." >&2; \
		exit 1; \
	else \
		echo "bench-gpu: installing $(WHEELS)/*.whl"; \
		$(PYTHON) -m pip install --quiet --no-deps --no-index --no-build-isolation $(WHEELS)/*.whl || { \
			echo "bench-gpu: pip install failed; unpacking the wheels into $(WHEELS)/site instead" >&2; \
			for w in $(WHEELS)/*.whl; do $(PYTHON) -m zipfile -e "$$w" $(WHEELS)/site || exit 1; done; }; \
	fi
	@if $(PYTHON) -c "import importlib.metadata as m; m.version('patchenv')" 2>/dev/null; then \
		echo "bench-gpu: patchenv is installed already; this checkout runs from PYTHONPATH ahead of it"; \
	else \
		$(PYTHON) -m pip install --quiet --no-deps --no-index --no-build-isolation -e . || \
		echo "bench-gpu: 'pip install -e .' failed; running the checkout from PYTHONPATH" >&2; \
	fi
	@echo "bench-gpu: writing $(BENCH_GPU_OUT)"
	PYTHONPATH="$(CURDIR)/$(WHEELS)/site:$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(PYTHON) -m benchmarks.device_report --out $(BENCH_GPU_OUT) --no-progress \
		$(if $(BENCH_GPU_QUICK),--device cpu --quick) $(BENCH_GPU_ARGS)
	PYTHONPATH="$(CURDIR)/$(WHEELS)/site:$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(PYTHON) -m benchmarks.population --out $(BENCH_GPU_OUT)/population --host-profile --no-progress \
		$(if $(BENCH_GPU_QUICK),--device cpu --quick,$(BENCH_GPU_POPULATION_SIZES)) \
		$(BENCH_GPU_POPULATION_ARGS)
	$(if $(BENCH_GPU_QUICK),@echo "bench-gpu: graph-captured populations need CUDA: skipped", \
	PYTHONPATH="$(CURDIR)/$(WHEELS)/site:$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(PYTHON) -m benchmarks.population --out $(BENCH_GPU_OUT)/population-cuda-graphs --cuda-graph --no-progress \
		--presets tiny --num-envs 1,8,32,64 $(BENCH_GPU_POPULATION_ARGS))
	@if [ -f $(FMNIST_CARRY)/train-images-idx3-ubyte.gz ] || [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
		PYTHONPATH="$(CURDIR)/$(WHEELS)/site:$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(PYTHON) -m benchmarks.compare_selectors --suite fmnist --epochs 1 --population --data-root data \
			--no-progress --out $(BENCH_GPU_OUT)/fmnist-1-epoch-population \
			$(if $(BENCH_GPU_QUICK),--device cpu $(BENCH_GPU_SUITE_QUICK),--device auto) $(BENCH_GPU_SUITE_ARGS); \
	else \
		echo "bench-gpu: no Fashion-MNIST in $(FMNIST_CARRY) (make carry-fmnist where it is installed): suite skipped"; \
	fi

clean:
	rm -rf $(VENV) results runs
