# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use,
# installing the CPU build of torch FIRST (pinned), so pip never resolves torch to a CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= out/demo
# benchmark data: $CRYSTALFLOW_DATA, else ../shared/data beside the repository
export CRYSTALFLOW_DATA ?= $(abspath ../shared/data)

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/crystalflow predict --composition SrTiO3 --num-samples 4 --out $(DEMO_OUT) --overwrite
	@echo "CIF files and summary.csv written to $(abspath $(DEMO_OUT)); the first is the top-ranked structure"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
