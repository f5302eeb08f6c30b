# The two commands of a fresh machine:
#   make demo   set everything up and run the main job on the embedded default
#   make test   set everything up and run the tests
PYTHON := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test
setup:
	bash tools/setup.sh

demo: setup
	$(PYTHON) -m tools.demo --output demo_output

test: setup
	$(PYTHON) -m pytest -q
