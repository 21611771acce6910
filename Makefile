# Quick start: `make demo` runs the app on the bundled default model, `make test` runs the test suite.
# Both install what they need first (a no-op when it is already there).
PYTHON ?= python3
# Debian packages: the GL/GLib libraries OpenCV's contrib build (needed by mediapipe) links against, and for the
# tests Chromium (Playwright drives Debian's build; it never downloads a browser of its own).
APP_PACKAGES := libgl1 libglib2.0-0
TEST_PACKAGES := chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages test-packages demo test

install: system-packages
	$(PYTHON) -m pip install -q -r requirements.txt

system-packages:
	@missing=""; for p in $(APP_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing (apt-get)"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

test-packages:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (apt-get)"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(TEST_PACKAGES) >/dev/null; }

demo: install
	$(PYTHON) app.py

test: install test-packages
	$(PYTHON) -m pytest -q tests
