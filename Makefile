PYTHON ?= .venv/bin/python

.PHONY: bench bench-quick

# The benchmark suite against this machine's own limits (see benchmarks/README.md).
bench:
	mkdir -p artifacts
	PYTHONPATH=. $(PYTHON) -m benchmarks --json artifacts/bench.json

bench-quick:
	PYTHONPATH=. $(PYTHON) -m benchmarks --quick
