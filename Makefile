# The two commands of the README:
#   make course   the whole course on its small built-in default (smoke profile), then the book
#                 (from the committed reference run, book/reference/)
#   make test     unit tests, a smoke course (every notebook executed once, and the run fails
#                 when any cell fails), the book from the smoke run and from the reference run,
#                 smoke bench, the gpu bench's dry run, and the Colab-like install check
# Both create .venv on first use. BACKEND picks the Keras backend extra (tf-cpu, tf, jax, torch)
# and the backend everything runs on (KERAS_BACKEND, exported to every command below).
PYTHON ?= python3
VENV ?= .venv
BACKEND ?= tf-cpu
KERAS_BACKEND_tf-cpu := tensorflow
KERAS_BACKEND_tf := tensorflow
KERAS_BACKEND_jax := jax
KERAS_BACKEND_torch := torch
export KERAS_BACKEND := $(KERAS_BACKEND_$(BACKEND))
ifeq ($(KERAS_BACKEND),)
$(error BACKEND must be tf-cpu, tf, jax or torch, not '$(BACKEND)')
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(BACKEND)

.PHONY: setup course test test-page book-pages clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(BACKEND),jax,dev,serve]"
	touch $@

course: $(STAMP)
	$(BIN)/tlkit course run --profile smoke --out runs/smoke
	$(BIN)/tlkit book build

# On another backend, make test runs the `backends` subset on JAX itself, which trains and checks
# more on JAX than test_backends' one JAX step in a subprocess: that case is left out there.
ONE_JAX_STEP := tests/test_backends.py::test_other_backend_trains_one_step[jax]
test: $(STAMP)
ifneq ($(KERAS_BACKEND),jax)
	$(BIN)/python -m pytest tests -q --durations=10 --deselect "$(ONE_JAX_STEP)"
	# the same code on JAX: the fast `backends` subset (JAX is installed with every backend)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(BIN)/python -m pytest tests -q -m backends --durations=5
else
	$(BIN)/python -m pytest tests -q --durations=10
endif
	# Every notebook runs once, here: a failed cell fails the run (exit 1). The unit tests check
	# that the runner injects only names every parameters cell defines, so a notebook opened
	# without it (Jupyter, Colab; the profile from $$TLKIT_PROFILE) runs the same code.
	$(BIN)/tlkit course run --profile smoke --out runs/ci-smoke
	# Two builds, each checking its own pages: this commit's fresh outputs and its run's results
	# render; then the published book from the committed reference run (left in _build/html).
	$(BIN)/tlkit book build --run runs/ci-smoke
	$(BIN)/tlkit book build
	test -f _build/html/index.html
	$(BIN)/tlkit bench --suite smoke --course-summary runs/ci-smoke/summary.json --out runs/ci-bench
	# the gpu suite's code paths on a few batches (a CPU, or --dry-run): its goals table, each 'not measured'
	$(BIN)/tlkit bench --suite gpu --dry-run --course-summary runs/ci-smoke/summary.json --out runs/ci-bench-gpu
	# Colab's stack (Python 3.12, TF 2.19, Keras 3.10, numpy 2.0, protobuf 5.29): installing tlkit,
	# [serve] and [course] keeps it, and notebooks 01 and 06 run there (smoke)
	bash .ci/colab_like.sh

# The camera page and the book's page checker in headless Chromium: Debian's chromium
# package, driven by Playwright.
test-page: $(STAMP)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/python -m pip install -q -e ".[browser]"
	$(BIN)/python -m pytest tests/test_page.py tests/test_book_pages.py -m browser -q

# The book (from the committed reference run) at a laptop's and a phone's width: screenshots
# and pages.json in runs/book-pages; fails when a page has a problem.
book-pages: test-page
	$(BIN)/tlkit book build
	$(BIN)/python benchmarks/book_pages.py --out runs/book-pages

clean:
	rm -rf _build runs book/notebooks book/_generated book/results.md book/performance.md
