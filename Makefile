# The user's entry points. Every target runs inside .venv, created by `make setup`.
# `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --constraint constraints.txt
export PATH := $(abspath $(BIN)):$(PATH)
# The torchserve command reads config.properties only when told where it is.
export TS_CONFIG_FILE := $(CURDIR)/config.properties

# Training knobs (override on the command line: make train CONFIG=... DATA=...)
CONFIG ?= train/configs/tood_x101-64x4d_fpn_acne04.py
DATA ?= data/acne04
WORK_DIR ?= work_dirs/$(notdir $(basename $(CONFIG)))
TRAIN_ARGS ?=
MODEL_STORE ?= model_store
ACNE04 ?= ../shared/data/acne04
SPACE ?=
EXPERIMENTS ?= copy_paste,background_removal,bbox_loss,cls_loss,detectors,per_group
EXPERIMENT_ARGS ?=
# Where torch comes from; empty: pip's own sources (PyPI's default build: on Linux, the CUDA one).
# make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU build.
TORCH_INDEX ?=

.PHONY: help setup test train import-acne04 evaluate archive serve stop demo app space experiments clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# The stamp depends on the pins, so a second `make setup` with nothing changed does nothing.
setup: $(VENV)/.setup-done  ## create .venv with the pinned stack (first time: about 20 minutes on 2 cores, mmcv compiles)
$(VENV)/.setup-done: requirements.txt constraints.txt
	@$(PY) -c 'import sys; sys.version_info[:2] == (3, 11) or print("note: $(PY) is Python %d.%d; the stack is tested with 3.11 (make setup PY=python3.11)" % sys.version_info[:2])'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -q --upgrade "pip<26" wheel
	$(PIP) -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) -q -r requirements.txt
	# mmcv compiles its ops against the torch just installed (no build isolation), and its
	# setup.py needs setuptools<70 (torch wants >=77 at run time: restored right after).
	# pip caches the built wheel, so only the first setup on a machine is slow.
	$(BIN)/pip install -q "setuptools<70" 2>&1 | grep -v "dependency conflicts\|setuptools>=77" || true
	MMCV_WITH_OPS=1 MAX_JOBS=$$(nproc) $(BIN)/pip install -q --no-build-isolation mmcv==2.1.0
	$(PIP) -q "setuptools==80.9.0"
	$(BIN)/python -c "import torch, mmcv, mmdet, mmcv.ops; print('torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__)"
	# After `source .venv/bin/activate`, a bare `torchserve --start --models trouble.mar` from the
	# repository root uses config.properties.
	grep -q TS_CONFIG_FILE $(BIN)/activate || echo 'export TS_CONFIG_FILE="$(CURDIR)/config.properties"' >> $(BIN)/activate
	touch $@

test: setup  ## run the whole test suite
	bash tools/install_system_deps.sh java chromium
	$(BIN)/python -m pytest tests -p no:cacheprovider

import-acne04: setup  ## import ACNE04 (VOC) into COCO format under data/acne04, one class, grade from the file name
	$(BIN)/python -m train.data import --format voc --src $(ACNE04) --out data/acne04 \
	    --single-class acne --grade-from-filename 'levle(\d)_' --symlink --overwrite

train: setup  ## train CONFIG on DATA, evaluate, and archive model_store/trouble.mar
	$(BIN)/python -m train.train $(CONFIG) --data $(DATA) --work-dir $(WORK_DIR) $(TRAIN_ARGS)

evaluate: setup  ## evaluate the model in WORK_DIR on DATA's valid split
	$(BIN)/python -m train.evaluate --work-dir $(WORK_DIR) --gt $(DATA)/valid/annotations.json --out $(WORK_DIR)/eval --overwrite

archive: setup  ## rebuild MODEL_STORE/trouble.mar (default model_store/) from WORK_DIR
	$(BIN)/python -m train.archive --work-dir $(WORK_DIR) --out $(MODEL_STORE)

serve: setup  ## start TorchServe on model_store/trouble.mar (config.properties)
	@test -f model_store/trouble.mar || { echo "model_store/trouble.mar is missing: make train (or make archive)"; exit 1; }
	@bash tools/install_system_deps.sh java
	@mkdir -p logs
	@# A server already running is looked for first: started again, TorchServe would only say "already
	@# running", and truncating logs/torchserve.out under the running server's writes fills it with NULs.
	@# It may be another checkout's (the same temp folder, where TorchServe keeps its pid file): that one
	@# serves its own folder's model. logs/serve.result says which it was, for `make demo`.
	@tmp=$$($(BIN)/python -c 'import tempfile; print(tempfile.gettempdir())'); \
	    pid=$$(cat "$$tmp/.model_server.pid" 2>/dev/null); \
	    if [ -n "$$pid" ] && grep -qa org.pytorch.serve.ModelServer "/proc/$$pid/cmdline" 2>/dev/null; then \
	        where=$$(readlink "/proc/$$pid/cwd" 2>/dev/null); \
	        if [ "$$where" != "$(CURDIR)" ]; then \
	            echo "A TorchServe started in $${where:-a folder not readable here} is already running (pid $$pid):" \
	                 "it serves that folder's model, not this one's. Stop it there (make stop), or give this one" \
	                 "another TMPDIR and other ports (README: Serving)."; exit 1; fi; \
	        echo "TorchServe is already running (pid $$pid), started here: using it"; \
	        echo "already running" > logs/serve.result; \
	    else \
	        $(BIN)/torchserve --start --ncs --models trouble=trouble.mar > logs/torchserve.out 2>&1 \
	            || { cat logs/torchserve.out; exit 1; }; \
	        echo "started" > logs/serve.result; \
	    fi
	@# A server TorchServe gave up on (exit 3) would be taken as "already running" by the next serve:
	@# stop it. Not after other failures: the server may be another's, or still loading.
	$(BIN)/python -m handler.wait_ready; status=$$?; \
	    if [ $$status -eq 3 ]; then $(BIN)/torchserve --stop > /dev/null; fi; exit $$status

stop:  ## stop TorchServe, and wait until it is gone (a serve right after would find it still running)
	-@pid=$$(cat "$${TMPDIR:-/tmp}/.model_server.pid" 2>/dev/null); $(BIN)/torchserve --stop; \
	    for i in $$(seq 30); do { [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null; } || break; sleep 1; done

app: setup  ## start the Gradio app against the local TorchServe
	$(BIN)/python space/app.py

demo: serve  ## TorchServe plus the app on model_store/trouble.mar (Ctrl-C stops both)
	@# Stops only a server this serve started: one that was running before stays up.
	started=$$(cat logs/serve.result); trap '[ "$$started" = started ] && $(BIN)/torchserve --stop' EXIT; \
	    $(BIN)/python space/app.py

space: setup  ## create/update the Hugging Face Space SPACE=user/name (token: HF_TOKEN; MMCV_WHEEL=prebuilt mmcv wheel)
	@test -n "$(SPACE)" || { echo "usage: make space SPACE=user/name [MMCV_WHEEL=path/or/url.whl]"; exit 2; }
	$(BIN)/python space/push.py --space $(SPACE) --model model_store/trouble.mar $(if $(MMCV_WHEEL),--mmcv-wheel $(MMCV_WHEEL))

experiments: setup  ## rerun the original study's comparisons on DATA into reports/experiments (EXPERIMENT_ARGS=--smoke on a CPU)
	$(BIN)/python -m train.experiments --data $(DATA) --out reports/experiments --runs $(EXPERIMENTS) $(EXPERIMENT_ARGS)

clean:  ## remove work dirs, logs and caches (keeps .venv and model_store)
	rm -rf work_dirs logs .pytest_cache
