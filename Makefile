# xsa-enhance: the two README commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

.PHONY: venv install demo test test-slow bench bench-quick docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Install the pinned stack (requirements/constraints.txt) and the package in editable mode.
$(STAMP): $(BIN)/python setup.cfg requirements/constraints.txt
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(BIN)/python
install: $(STAMP)

## The main job end to end on the embedded default; results in $(DEMO_OUT)/.
demo: $(STAMP)
	$(BIN)/xsa-enhance -v demo --out $(DEMO_OUT)

## The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

## Long fault trials and other slow tests.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

## The documentation site (MkDocs, warnings are errors) into site/.
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info .pytest_cache
