# TDR — two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
WS      ?= workspace/demo
TEACHERS ?= 5000

.PHONY: demo test lint typecheck unit bench browser-deps clean

$(PY):
	python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip

# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's Chromium for the browser tests (no browser download from a hub).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; }
	@fc-list 2>/dev/null | grep -qi "noto sans cjk" || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null; }

demo: $(STAMP)
	.venv/bin/tdr demo --teachers $(TEACHERS) --workspace $(WS)

lint: $(STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: $(STAMP)
	.venv/bin/mypy

unit: $(STAMP) browser-deps
	.venv/bin/pytest -n 2 --dist loadfile -q

test: lint typecheck unit

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf .venv workspace .pytest_cache .mypy_cache .ruff_cache
