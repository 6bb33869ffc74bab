# formreader: two entry points for a fresh Debian machine (see README).
#   make demo  - install the tool and run it on the bundled samples
#   make test  - install the tool with its training, test and Ray extras and run the test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := poppler-utils libgl1 libglib2.0-0 tesseract-ocr tesseract-ocr-fra python3-venv chromium chromium-driver

.PHONY: demo test system venv install install-dev clean

system:
	@if ! command -v pdftoppm >/dev/null || ! command -v tesseract >/dev/null || ! command -v chromedriver >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); fi

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: system $(PY)
	$(PY) -m pip install -q .

install-dev: system $(PY)
	$(PY) -m pip install -q -e ".[train,dev,ray]"

demo: install
	mkdir -p out
	$(VENV)/bin/formreader scan samples --out out/results.csv --crops out/crops
	$(VENV)/bin/formreader benchmark samples --report out/benchmark.json

test: install-dev
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) out build *.egg-info
