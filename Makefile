# The two commands of a fresh machine:
#   make demo   set everything up and run the main job on the embedded default
#   make test   set everything up and run the tests
PYTHON := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# The tests run without a network: in a new network namespace (unshare --net) with only the
# loopback interface up (the PACS bridge test talks to Orthanc on 127.0.0.1). Root may create
# one; other users get it inside a user namespace (--map-root-user).
OFFLINE := unshare --net $(if $(filter 0,$(shell id -u)),,--map-root-user) sh -c 'ip link set lo up && exec "$$@"' offline

.PHONY: setup demo test lint
setup:
	bash tools/setup.sh

demo: setup
	$(PYTHON) -m tools.demo --output demo_output

# Set-up and the test data need the network; the tests must not.
# Lint, format and type checks (configured in pyproject.toml); part of `make test`, so CI runs them.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test: setup lint
	$(PYTHON) -m tools.fetch_test_data
	$(OFFLINE) $(PYTHON) -m pytest -q
