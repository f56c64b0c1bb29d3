# The Grafana UI (frontend/): included by the top-level Makefile; paths are relative to the repository root.
# `make frontend-test` = type-check, lint, jest, webpack build, real-browser test (Debian chromium).

FE_DIR      := frontend
FE_STAMP    := $(FE_DIR)/node_modules/.ci-stamp
FE_MODULE   := $(FE_DIR)/dist/module.js
FE_SOURCES  := $(shell find $(FE_DIR)/src -type f 2>/dev/null) $(FE_DIR)/webpack.config.js $(FE_DIR)/tsconfig.json
CHROMIUM    ?= /usr/bin/chromium

.PHONY: frontend-deps frontend-build frontend-test frontend-clean

# node_modules from the committed lockfile, redone whenever the lockfile is newer than the last install.
$(FE_STAMP): $(FE_DIR)/package-lock.json $(FE_DIR)/package.json | deps
	cd $(FE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

frontend-deps: deps $(FE_STAMP)
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "installing Debian package: chromium"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium </dev/null; \
	fi

$(FE_MODULE): $(FE_STAMP) $(FE_SOURCES)
	cd $(FE_DIR) && npm run -s build
	@echo "module.js: $$(stat -c %s $@) bytes"

frontend-build: $(FE_MODULE)

frontend-test: frontend-deps
	cd $(FE_DIR) && npm run -s typecheck
	cd $(FE_DIR) && npm run -s lint
	cd $(FE_DIR) && npx jest --ci
	$(MAKE) --no-print-directory frontend-build
	cd $(FE_DIR) && CHROMIUM_PATH=$(CHROMIUM) npm run -s test:browser

frontend-clean:
	rm -rf $(FE_DIR)/dist $(FE_DIR)/browser-test/out
