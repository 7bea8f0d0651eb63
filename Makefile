# Two entry points (see README): `make demo` runs the whole arena, `make test` runs the tests.
# Both create .venv and install through constraints.txt (torch pinned to the local CPU build).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench protos clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/arena demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/arena bench train
	$(VENV)/bin/arena bench serve
	$(VENV)/bin/arena bench attack

protos: $(STAMP)
	$(PY) -m protos.generate

clean:
	rm -rf .cache demo-out
