# Mutual TLS demo. `make` lists the targets; `make demo` runs it; `make test` proves it.
SHELL := bash
PYTHON ?= python3
PORT ?= 4443
CURL_FLAGS = --cacert server-cert.pem --cert client-cert.pem --key client-key.pem

.DEFAULT_GOAL := help
.PHONY: help certs serve client curl demo test test-browser clean bench

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

certs: ## create the server and client identities (./bootstrap.sh; keeps existing ones)
	./bootstrap.sh

serve: certs ## run the server on https://localhost:4443 (PORT=n to change; Ctrl-C stops it)
	cd server && $(PYTHON) webserver.py --port $(PORT)

client: ## fetch https://localhost:4443/ with the Python client (server must be running)
	$(PYTHON) client/client.py -v https://localhost:$(PORT)/

curl: ## fetch https://localhost:4443/ with curl (server must be running)
	cd client && curl -sS $(CURL_FLAGS) https://localhost:$(PORT)/ && echo

demo: certs ## start the server, call it with the Python client and curl, stop it
	@set -euo pipefail; \
	log=$$(mktemp); \
	$(PYTHON) server/webserver.py --port $(PORT) 2>"$$log" & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -f "$$log"' EXIT; \
	for _ in $$(seq 50); do grep -q 'serving https' "$$log" && break; \
	  kill -0 $$pid 2>/dev/null || { cat "$$log"; exit 1; }; sleep 0.1; done; \
	grep -q 'serving https' "$$log" || { cat "$$log"; echo "demo: server did not start" >&2; exit 1; }; \
	echo "== server:  python3 server/webserver.py --port $(PORT)"; \
	echo "== Python client:  python3 client/client.py -v https://localhost:$(PORT)/"; \
	$(PYTHON) client/client.py -v https://localhost:$(PORT)/; \
	echo "== curl:  (cd client && curl $(CURL_FLAGS) https://localhost:$(PORT)/)"; \
	(cd client && curl -sS $(CURL_FLAGS) https://localhost:$(PORT)/) && echo; \
	echo "== without a client certificate the server refuses:"; \
	(cd client && curl -sS --cacert server-cert.pem https://localhost:$(PORT)/ 2>&1 || true); \
	echo "== server log:"; sed 's/^/   /' "$$log"

test: ## run the whole test suite against real curl, openssl s_client and gnutls-cli
	$(PYTHON) -W error -m unittest discover -s tests -t . -v

bench: ## measure server CPU per mTLS connection and request against openssl s_server (<3 min)
	$(PYTHON) -m bench

test-browser: ## sign in with headless Chromium and the exported .p12 (as root: writes /etc/chromium policy)
	$(PYTHON) -W error -m unittest tests.browser_check -v

clean: ## delete generated identities (keys, certificates, .p12 bundles) and caches
	rm -f server/*.pem client/*.pem client/*.p12
	rm -rf server/clients server/revoked client/*/ __pycache__ */__pycache__
