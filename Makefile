# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch first, pinned: a CPU build lies on disk here, a looser range would pull a CUDA build.
TORCH   := torch==2.13.0

.PHONY: install run test lint typecheck unit bench bench-learning clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Train the quick default: PPO on CartPole (rl-baselines3-zoo values) to 500, under a minute.
run: $(STAMP)
	$(BIN)/rlbench experiment=ppo_cartpole

## ruff, mypy and the test suite (learning checks included; under 10 minutes on 2 cores).
test: $(STAMP) lint typecheck
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/python -m pytest -q -n auto

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

## Speed benchmarks against peers (minutes each; never part of `make test`). Needs the bench
## extra (SB3).
SPEED_BENCHES    := envs dqn per rainbow ppo sac shortcuts tdmpc2
## Learning benchmarks: many seeds of whole runs (hours on a laptop CPU).
LEARNING_BENCHES := learning sac_learning presets zoo_sb3

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@for name in $(SPEED_BENCHES); do \
		echo "== scripts/bench_$$name.py"; $(BIN)/python scripts/bench_$$name.py || exit 1; \
	done

bench-learning: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@for name in $(LEARNING_BENCHES); do \
		echo "== scripts/bench_$$name.py"; $(BIN)/python scripts/bench_$$name.py || exit 1; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
