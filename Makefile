# Reproducible study of cross-scale knowledge transfer between language models.
# `make setup` builds .venv from requirements.lock; `make test` and `make reproduce` do it themselves
# whenever .venv is missing or the lock or pyproject.toml changed. `make help` lists the targets.

PYTHON  ?= python3
PY      := .venv/bin/python
STAMP   := .venv/.setup-stamp
KERNEL  := lsa-study
PROFILE ?= cpu
DEVICE  ?= auto
FORCE   ?=
LAB_OPTIONS ?=
# The default profile writes results/; any other writes results/<profile>/ beside it.
RESULTS ?= $(if $(filter cpu,$(PROFILE)),results,results/$(PROFILE))
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# `make lock` holds torch here: a newer torch is a deliberate change, not a side effect of relocking.
TORCH   ?= 2.13.0

.DEFAULT_GOAL := help
ifneq ($(shell id -u),0)
SUDO := sudo
endif

.PHONY: help setup sandbox-tool test reproduce real-smoke bench exercises lab lock clean distclean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) sandbox-tool ## create .venv from requirements.lock, with the package, its Jupyter kernel and the nbstripout filter

# Generated code runs only inside bubblewrap (Debian's `bubblewrap`): installed here when we are root with
# apt; otherwise the one command that does it is printed, and code evaluation refuses to run until then.
sandbox-tool: ## install bubblewrap, the sandbox for generated code, if it is missing (root with apt)
	@command -v bwrap >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing bubblewrap, the sandbox for generated code"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap \
			|| { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap; }; \
		else \
			echo "bubblewrap is missing; generated code will not run until you run: $(SUDO) apt-get install bubblewrap" >&2; \
		fi; }

# The stamp says .venv was built from the current lock and pyproject.toml. nbstripout finds
# notebooks/*.ipynb already named in .gitattributes, so it only adds the filter to .git/config.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv .venv
	$(PY) -m pip install -r requirements.lock
	$(PY) -m pip install --no-deps -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))"
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		$(PY) -m nbstripout --install --attributes .gitattributes; fi
	touch $@

test: $(STAMP) sandbox-tool ## run the test suite, offline
	$(OFFLINE) $(PY) -m pytest

# The teaching pack is rebuilt too (seconds: it builds notebooks, it does not run them), so the committed
# results/exercises/ match the notebooks of the same commit.
reproduce: $(STAMP) sandbox-tool ## run the notebooks in order, skipping up-to-date ones, into results/ (other profiles: results/PROFILE/), and rebuild the teaching pack: PROFILE=cpu DEVICE=auto FORCE=1
	$(PY) -m lsa_utils --profile $(PROFILE) --device $(DEVICE) --results-dir $(RESULTS) \
		$(if $(filter 1 yes true,$(FORCE)),--force)
	$(PY) -m lsa_utils.study.exercises --profile teach --out-dir $(RESULTS)/exercises

# Tiny random Qwen2 models and made-up benchmark rows, written once: the hub / local path end to end, offline.
.cache/real-smoke/models/student/config.json: tests/real_smoke.py tests/benchmark_rows.py | $(STAMP)
	$(OFFLINE) $(PY) tests/real_smoke.py .cache/real-smoke

real-smoke: $(STAMP) sandbox-tool .cache/real-smoke/models/student/config.json ## notebooks 00-06 on a tiny local pair and benchmark fixtures (scores mean nothing)
	$(OFFLINE) $(PY) -m lsa_utils --profile real-smoke --device cpu --results-dir results/real-smoke --force

bench: $(STAMP) sandbox-tool ## speed and memory benchmarks into results/tables/bench.csv and results/BENCH.md: PROFILE=cpu
	$(OFFLINE) $(PY) -m lsa_utils.study.bench --profile $(PROFILE)

exercises: $(STAMP) ## the teaching pack: student and solutions notebooks into results/exercises/ (docs/teaching.md)
	$(PY) -m lsa_utils.study.exercises --profile teach --out-dir results/exercises

# The project kernel is the default for new notebooks (the study's notebooks name it already); root (a
# container, CI) needs --allow-root. LAB_OPTIONS passes more, e.g. LAB_OPTIONS="--no-browser --port=8890".
lab: $(STAMP) ## open the notebooks in JupyterLab on the project kernel (as root too): LAB_OPTIONS=...
	$(PY) -m jupyter lab notebooks/ --MappingKernelManager.default_kernel_name=$(KERNEL) \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_OPTIONS)

lock: ## regenerate requirements.lock in a fresh throw-away venv
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && \
	"$$tmp/bin/python" -m pip install -e '.[dev]' 'torch==$(TORCH)' && \
	{ printf '%s\n' \
		'# Exact versions of every package of the environment; `make setup` installs from this file.' \
		'# Generated by `make lock` (a fresh venv, `pip install -e .[dev] torch==$(TORCH)`, `pip freeze`): do not edit.' \
		'# Local version labels (+cpu, +cu124) are dropped so pip picks the right build for each machine.'; \
	  "$$tmp/bin/python" -m pip freeze --exclude-editable | sed -E 's/^([^=]+==[^+]+)\+.*$$/\1/'; \
	} > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock

clean: ## remove the model and data caches (results/ stays: it is what the runs wrote)
	rm -rf .cache results/executed/*.failed.ipynb

distclean: clean ## also remove the virtual environment
	rm -rf .venv lsa_study.egg-info
