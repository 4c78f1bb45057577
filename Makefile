# Two commands do everything on a fresh machine (each sets up .venv first if needed):
#   make demo   sign the sample artwork with your own identity and verify it
#   make test   run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

.PHONY: setup demo test lint bench
setup: $(BIN)/.installed

demo: setup
	mkdir -p out
	$(BIN)/guard sign samples/artwork.png -o out/artwork.signed.png --force --author "Sample Artist"
	$(BIN)/guard verify out/artwork.signed.png

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
