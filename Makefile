# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Both install what they need first (tools/setup/setup.sh: idempotent, cached).
PYTHON := .venv/bin/python
SETUP := bash tools/setup/setup.sh

.PHONY: setup plugin demo test test-fast test-cpp test-py bench gpu-check clean

setup:
	$(SETUP) all

plugin:
	$(SETUP) plugin

demo: setup
	$(PYTHON) tools/demo.py $(DEMO_ARGS)

test: setup
	$(MAKE) --no-print-directory test-cpp test-py

# The fast tier: the layers' gtest suite and every pytest test not marked e2e (pytest.ini).
test-fast: setup
	$(MAKE) --no-print-directory test-cpp
	$(PYTHON) -m pytest tests -m 'not e2e' $(PYTEST_ARGS)

test-cpp:
	ctest --test-dir build/plugin --output-on-failure -j 2

test-py:
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

bench: setup
	$(PYTHON) tools/benchmark_layers.py $(BENCH_ARGS)
	$(PYTHON) tools/benchmark_data_layer.py $(DATA_BENCH_ARGS)
	$(PYTHON) tools/benchmark_datalist.py $(DATALIST_BENCH_ARGS)

# On a machine with an NVIDIA GPU: builds for it, runs the GPU tests and benchmarks, prints a
# table (tools/gpu_check.sh); elsewhere it says there is no GPU and fails.
gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf build
