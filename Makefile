# Two commands do everything on a fresh machine (each sets up .venv first if needed):
#   make demo   sign the sample artwork with your own identity and verify it
#   make test   run the test suite
# .venv holds exactly the versions in requirements.lock (hashes checked); pyproject.toml keeps the
# ranges that `pip install guard` resolves elsewhere. `make lock` after editing pyproject.toml,
# `make upgrade` to move every pin to today's releases; commit requirements.lock either way.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
# The lock is resolved for the machines it is installed on: CPython 3.11 on x86-64 Linux.
RESOLVE := $(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28 -c constraints.txt -o $(LOCK)

$(BIN)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

.PHONY: setup demo test test-fast lint lock upgrade
setup: $(BIN)/.installed

demo: setup
	mkdir -p out
	$(BIN)/guard sign samples/artwork.png -o out/artwork.signed.png --force --author "Sample Artist"
	$(BIN)/guard verify out/artwork.signed.png

test: setup
	$(BIN)/python -m pytest -q

# the edit-test loop: everything but the tests marked slow
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

lock: setup
	$(RESOLVE)

upgrade: setup
	$(RESOLVE) --upgrade
