# Two commands set everything up on a fresh machine:
#   make demo   install into .venv, then run the main job on the shipped model
#   make test   install into .venv, then run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
# CPU build of torch (local on the project machines); on a GPU machine set TORCH= to keep yours
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
OUT ?= out

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	test -z "$(TORCH)" || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/python -m anyir_edge info
	mkdir -p $(OUT)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
