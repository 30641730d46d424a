# Two commands set everything up on a fresh machine:
#   make demo   install into .venv, then run the main job on the shipped model
#   make test   install into .venv, then run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
# CPU build of torch (local on the project machines); on a GPU machine set TORCH= to keep yours
TORCH ?= torch==2.13.0
# the shipped model the demo runs (anyir_edge.DEFAULT_MODEL)
MODEL ?= anyir-tiny
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

# the main job on the shipped model: export + verify, benchmark, restore a degraded photo
demo: install
	mkdir -p $(OUT)
	$(BIN)/python -m anyir_edge info
	$(BIN)/anyir-export --to onnx --model $(MODEL) --output $(OUT)/
	$(BIN)/anyir-bench --model $(MODEL) --size 224 --backends torch,onnxruntime,openvino,tensorrt \
		--json $(OUT)/bench.json --markdown $(OUT)/bench.md
	$(BIN)/python -m anyir_edge degrade anyir_edge/assets/kite_251x333.png $(OUT)/kite_noisy.png --spec noise --seed 1
	$(BIN)/anyir-restore $(OUT)/kite_noisy.png -o $(OUT)/kite_restored.png --model $(OUT)/$(MODEL).onnx
	@echo "demo done: $(OUT)/$(MODEL).onnx (+ parity certificate), $(OUT)/bench.md, $(OUT)/kite_restored.png"

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
