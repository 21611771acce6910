# Quick start: `make demo` runs the app on the bundled default model, `make test` runs the test suite.
# Both install the pinned requirements first (a no-op when they are already there).
PYTHON ?= python3

.PHONY: install demo test

install:
	$(PYTHON) -m pip install -q -r requirements.txt

demo: install
	$(PYTHON) app.py

test: install
	$(PYTHON) -m pytest -q tests
