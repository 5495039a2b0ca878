# radiobundles — `make demo` and `make test` are all a new machine needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LOCK := requirements/lock.txt
STAMP := $(VENV)/.radiobundles-installed
DEMO_OUT ?= demo_output

.PHONY: install demo test lint format test-fast lock clean label-server bench bench-quick demo-dicom orthanc shell test-exhaustive
PORT ?= 8000
# the model beside the store (where `make demo` leaves it), if there is one; MODEL=<file.pt> chooses another
MODEL ?= $(wildcard $(dir $(patsubst %/,%,$(STUDIES)))models/model.pt)

install: $(STAMP)

# Stages: torch first (sam2, a monailabel dependency, builds against it without a second
# torch download), then the whole lock, then the project itself in editable mode.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(LOCK) pip setuptools wheel
	$(PIP) install -q -c $(LOCK) torch torchvision
	SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation -c $(LOCK) sam2
	$(PIP) install -q --no-build-isolation -r $(LOCK)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@touch $@

demo: install
	$(PY) scripts/demo.py --out $(DEMO_OUT)

# DICOM round trip on synthetic data: Orthanc -> ingest (DICOMweb) -> inference -> DICOM SEG -> Orthanc
# (needs apt packages orthanc orthanc-dicomweb)
demo-dicom: install
	$(PY) scripts/demo_dicom.py --out demo_dicom_output

# Orthanc + DICOMweb on 127.0.0.1 (config: configs/orthanc/orthanc.json): make orthanc [ORTHANC_PORT=8042]
ORTHANC_PORT ?= 8042
orthanc: install
	$(PY) -m radiobject_adapter.testing.orthanc --port $(ORTHANC_PORT) --storage .orthanc

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest -m "not exhaustive" --durations=30

# unit and in-process tests only, spread over the cores by pytest-xdist (<= 3 min on an idle
# 2-core machine); `make test` (CI) runs every test in one process
test-fast: install
	$(VENV)/bin/pytest -n auto -m "not slow and not integration and not exhaustive"

# every kill point of every store writer (issue 13's enumeration; about 600 forked runs), and the
# twenty-point kill loops of ingest, training and label saves (make test runs their short versions)
test-exhaustive: install
	$(VENV)/bin/pytest -m exhaustive -s

# Loader-throughput experiment (benchmarks/README.md); data cached in benchmarks/data/
bench: install
	$(PY) -m benchmarks.run --mode full

bench-quick: install
	$(PY) -m benchmarks.run --mode quick

# MONAI Label server for 3D Slicer on this machine: make label-server STUDIES=<store or NIfTI folder> [PORT=8000] [MODEL=<file.pt>]
label-server: install
	@test -n "$(STUDIES)" || { echo "usage: make label-server STUDIES=<store or NIfTI folder> [PORT=8000] [MODEL=<file.pt>]"; exit 2; }
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH monailabel start_server --app monailabel_app --studies $(STUDIES) \
		--conf models ct_segmentation_3d $(if $(MODEL),--conf model $(MODEL)) --host 127.0.0.1 --port $(PORT)

# a shell with the project's commands on PATH (radiobundles, python -m monai.bundle, monailabel); exit to leave
shell: install
	@echo "radiobundles shell: $(CURDIR)/$(VENV)/bin is first on PATH; type exit to leave"
	@PATH=$(CURDIR)/$(VENV)/bin:$$PATH VIRTUAL_ENV=$(CURDIR)/$(VENV) $${SHELL:-/bin/bash} -i

lock:
	$(PIP) freeze --exclude-editable | grep -v '^radiobundles' > $(LOCK).new && mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
