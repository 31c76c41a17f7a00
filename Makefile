# Roost: `make run` serves registry/ ; `make test` runs every test. Both install what is missing.

# Debian packages the build and the tests need (pkg-config finds libuv for SwiftPM).
DEB_PACKAGES := libuv1-dev libhttp-parser-dev libsqlite3-dev pkg-config
# Extra packages for `make test`: Debian's cgit, an unmodified CGI program, serves a git repository
# the test makes with git.
TEST_PACKAGES := git cgit
# Extra packages for `make bench` (tools Roost is compared with, the load generators, gcc for the
# benchmarks' C CGI program, curl to check every server's answer before it is measured).
BENCH_PACKAGES := hyperfine bc runit s6 supervisor lighttpd nginx fcgiwrap wrk gcc curl
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
SWIFT ?= swift

.PHONY: run test build release bench deps test-deps bench-deps clean

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test-deps: deps
	@missing=""; \
	for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build

# The Swift runtime and Foundation are linked in statically: one self-contained binary, and
# about 5 MiB less resident memory than the shared libraries (measured in docs/BENCHMARKS.md).
release: deps
	$(SWIFT) build -c release --static-swift-stdlib --product roost

run: release
	.build/release/roost run --registry registry

# The run's failures are repeated at its end, where a truncated CI log still shows them.
test: test-deps
	$(SWIFT) build --build-tests
	@mkdir -p .build; { $(SWIFT) test --skip-build 2>&1; echo $$? > .build/test-status; } | tee .build/test.log; \
	status=$$(cat .build/test-status); \
	if [ "$$status" -ne 0 ]; then \
		echo "---- failures (repeated from above) ----"; \
		grep -E '✘|error:|Fatal error|Crash' .build/test.log | grep -v '^✘ Test run with' | head -60; \
	fi; \
	exit $$status

bench-deps: deps
	@missing=""; \
	for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

bench: bench-deps release
	$(SWIFT) build -c release --static-swift-stdlib --product core-bench
	$(SWIFT) build -c release --static-swift-stdlib --product registry-bench
	.build/release/core-bench
	.build/release/registry-bench
	bench/boot.sh .build/release/roost
	bench/restart.sh .build/release/roost 200 20
	bench/many.sh .build/release/roost 1000
	bench/http-cgi.sh .build/release/roost
	bench/idle-connections.sh .build/release/roost 10000
	bench/http-static.sh .build/release/roost

clean:
	rm -rf .build .roost
