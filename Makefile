# plcmail build, cross-build, test and install.
#
#   make build     host binary ./plcmail
#   make cross     stripped static binaries for the usual gateway boxes in dist/, with sizes
#   make test      the README's test command
#   make install   build, then deploy/install.sh (root; see deploy/README.md)
#   make openwrt   OpenWrt packages (.ipk, and .apk with apk-tools 3) for MIPS, ARM and AArch64 routers in dist/
#
# Cross builds need nothing but Go: CGO_ENABLED=0 makes every binary static,
# -trimpath keeps the build machine's paths out of it, -s -w drops the symbol
# and DWARF tables (about a third of the size).

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# COMMIT: what `plcmail version` shows when Go recorded no vcs.revision (a
# git worktree, whose .git is a file Go does not recognise): the full hash,
# "-dirty" with uncommitted changes.
COMMIT  ?= $(shell git describe --always --abbrev=40 --dirty --exclude='*' 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# nethttpomithttp2 leaves HTTP/2 out of net/http (0.5 MB of a 12 MB binary):
# plcmail's only HTTP is OAuth token requests, which HTTP/1.1 serves as well.
BUILDTAGS ?= nethttpomithttp2
# -buildvcs=auto records the commit (shown by `plcmail version`) when building
# from a git checkout, even if GOFLAGS turns it off.
GOFLAGS_BUILD := -trimpath -buildvcs=auto -tags "$(BUILDTAGS)" -ldflags "$(LDFLAGS)"
# OPENWRT_BUILDTAGS: tags only the OpenWrt packages add (the SDK feed's
# GO_PKG_TAGS repeats them). nodemo leaves out `plcmail demo`'s in-process
# devices (simulated PLC, SMTP server and CA, Modbus server): 0.2 MB that a
# router has no use for; its `plcmail demo` says to run the demo on a PC.
OPENWRT_BUILDTAGS ?= nodemo
GOFLAGS_OPENWRT := -trimpath -buildvcs=auto -tags "$(BUILDTAGS) $(OPENWRT_BUILDTAGS)" -ldflags "$(LDFLAGS)"
DIST    ?= dist
# TEMPLATE_OVERLAY: build with deploy/tmplmethods' text/template, which calls
# only the few methods templates may use (alarmmail.TemplateMethods) and so
# lets the linker drop every other method: 1.4 MB of the MIPS binary. Set it
# empty to build with the plain standard library (same templates accepted).
TEMPLATE_OVERLAY ?= $(DIST)/.tmplmethods
# OVERLAY_FLAG is a shell snippet: it writes the overlay and expands to the
# -overlay flag, or fails the recipe when overlay.sh refuses this Go release.
OVERLAY_SH = ov=; if [ -n '$(TEMPLATE_OVERLAY)' ]; then ov=$$(GO='$(GO)' sh deploy/tmplmethods/overlay.sh '$(TEMPLATE_OVERLAY)') || exit 1; ov="-overlay=$$ov"; fi

# ROUTER_GCFLAGS: compiler flags of the builds for small boxes (make cross,
# make openwrt, bench/size.sh; deploy/openwrt/Makefile repeats them), one
# -gcflags argument per word, later words winning. No inlining (-l): 0.7 MB
# less on MIPS (0.37 MB gzip). Inlining stays where the hot paths spend
# their CPU: crypto, math/bits, the runtime, hashes, sync, byte order,
# plcmail's own packages and go-smtp. With -l everywhere a TLS handshake took
# five times the CPU under qemu-mipsel; with these exceptions the handshake,
# the relay and the frame coding cost what they did (bench/RESULTS.md,
# "Size"). Set it empty to build as `make build` does.
ROUTER_GCFLAGS ?= all=-l crypto/...= vendor/golang.org/x/crypto/...= math/...= runtime= internal/runtime/...= \
	hash/...= sync/...= internal/byteorder= encoding/binary= github.com/plcmail/plcmail/...= github.com/emersion/...=
ROUTER_GCFLAGS_SH = gc=; for f in $(ROUTER_GCFLAGS); do gc="$$gc -gcflags=$$f"; done

# GOOS/GOARCH[/variant] -> dist/plcmail-<os>-<arch><variant>. The variant is
# GOARM for arm (6: Raspberry Pi Zero/1, 7: Pi 2+ and most ARM HMIs running a
# 32-bit OS) and GOMIPS for mipsle (softfloat: OpenWrt routers' MIPS cores
# have no FPU, and a hardfloat binary dies with SIGILL on them).
TARGETS ?= linux/amd64 linux/arm64 linux/arm/6 linux/arm/7 linux/mipsle/softfloat

# OpenWrt architecture = GOARCH/variant, as OpenWrt's golang-values.mk picks
# them: MIPS routers have no FPU (softfloat); arm_cortex-a7 without an FPU
# suffix gets GOARM=5. Other OpenWrt arches of the same CPU family take the
# same binary, e.g. OPENWRT_ARCHS="mipsel_74kc=mipsle/softfloat".
OPENWRT_ARCHS ?= mipsel_24kc=mipsle/softfloat arm_cortex-a7=arm/5 aarch64_cortex-a53=arm64
# Package version (IPK_VERSION): by default the git version without its "v",
# made to start with a digit as opkg compares them, plus the release "-1".
IPK_VERSION ?=

.PHONY: all build cross test vet install clean openwrt

all: build

build:
	@$(OVERLAY_SH); echo "CGO_ENABLED=0 $(GO) build $$ov $(GOFLAGS_BUILD) -o plcmail ./cmd/plcmail"; \
	CGO_ENABLED=0 $(GO) build $$ov $(GOFLAGS_BUILD) -o plcmail ./cmd/plcmail

cross:
	@mkdir -p $(DIST) && rm -f $(DIST)/plcmail-* $(DIST)/SHA256SUMS
	@set -e; $(OVERLAY_SH); $(ROUTER_GCFLAGS_SH); [ -z "$$gc" ] || echo "ROUTER_GCFLAGS:$$gc"; \
	for t in $(TARGETS); do \
		os=$$(echo $$t | cut -d/ -f1); arch=$$(echo $$t | cut -d/ -f2); variant=$$(echo $$t | cut -s -d/ -f3); \
		out=$(DIST)/plcmail-$$os-$$arch; goarm=; gomips=; \
		case $$arch in \
			arm) goarm=$$variant; out=$$out"v"$$variant;; \
			mips|mipsle) gomips=$${variant:-softfloat}; out=$$out"-"$$gomips;; \
		esac; \
		echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$goarm GOMIPS=$$gomips \
			$(GO) build $$ov $$gc $(GOFLAGS_BUILD) -o $$out ./cmd/plcmail; \
	done
	@echo "sizes (bytes):"
	@cd $(DIST) && for f in plcmail-*; do \
		wc -c <$$f | awk -v f=$$f '{ printf "  %-32s %9d  %5.2f MiB\n", f, $$1, $$1/1048576 }'; done
	@cd $(DIST) && { command -v sha256sum >/dev/null && sha256sum plcmail-* || shasum -a 256 plcmail-*; } > SHA256SUMS && echo "checksums: $(DIST)/SHA256SUMS"

# openwrt builds one .ipk per OPENWRT_ARCHS entry with deploy/openwrt/ipk/build.sh
# (tar and gzip only) and, when apk-tools 3 is installed, the same package as
# .apk (deploy/openwrt/apk/build.sh) for OpenWrt releases that use apk.
# The feed Makefile for the OpenWrt SDK is deploy/openwrt/Makefile.
openwrt:
	@mkdir -p $(DIST)/openwrt && rm -f $(DIST)/openwrt/plcmail_*.ipk $(DIST)/openwrt/plcmail_*.apk
	@set -e; $(OVERLAY_SH); $(ROUTER_GCFLAGS_SH); [ -z "$$gc" ] || echo "ROUTER_GCFLAGS:$$gc"; \
	v='$(IPK_VERSION)'; \
	apk=; if apk --version 2>/dev/null | grep -q '^apk-tools 3'; then apk=yes; fi; \
	[ -n "$$v" ] || v=$$(echo '$(VERSION)' | sed -e 's/^v//' -e '/^[0-9]/!s/^/0.0.0~/')-1; \
	for a in $(OPENWRT_ARCHS); do \
		owarch=$${a%%=*}; t=$${a#*=}; arch=$${t%%/*}; variant=$$(echo $$t | cut -s -d/ -f2); \
		goarm=; gomips=; \
		case $$arch in arm) goarm=$$variant;; mips|mipsle) gomips=$${variant:-softfloat};; esac; \
		bin=$(DIST)/openwrt/plcmail-$$owarch; \
		echo "build $$bin (GOARCH=$$arch$${goarm:+ GOARM=$$goarm}$${gomips:+ GOMIPS=$$gomips})"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$goarm GOMIPS=$$gomips \
			$(GO) build $$ov $$gc $(GOFLAGS_OPENWRT) -o $$bin ./cmd/plcmail; \
		ipk=$$(sh deploy/openwrt/ipk/build.sh --binary $$bin --arch $$owarch --version "$$v" --out $(DIST)/openwrt); \
		rm -f $$bin; \
		if [ -n "$$apk" ]; then sh deploy/openwrt/apk/build.sh --ipk $$ipk --out $(DIST)/openwrt >/dev/null; fi; \
	done
	@cd $(DIST)/openwrt && for f in plcmail_*.ipk plcmail_*.apk; do [ -f $$f ] || continue; \
		wc -c <$$f | awk -v f=$$f '{ printf "  %-48s %9d  %5.2f MiB\n", f, $$1, $$1/1048576 }'; done
	@echo "install on the router: opkg install /tmp/plcmail_<version>_<arch>.ipk"
	@if ls $(DIST)/openwrt/plcmail_*.apk >/dev/null 2>&1; then \
		echo "  or, on releases with apk: apk add --allow-untrusted /tmp/plcmail_<version>_<arch>.apk"; \
	else echo "no .apk: apk-tools 3 (apk mkpkg) is not installed (deploy/README.md)"; fi

test:
	$(GO) test -race ./...

vet:
	$(GO) vet ./...

# install builds the host binary and hands over to deploy/install.sh, which
# creates the plcmail user, the spool and /etc/plcmail with safe permissions.
# Pass options through INSTALL_FLAGS, e.g. make install INSTALL_FLAGS=--sendmail.
install: build
	sh deploy/install.sh --binary ./plcmail $(if $(DESTDIR),--destdir $(DESTDIR)) $(INSTALL_FLAGS)

clean:
	rm -rf $(DIST) plcmail

# The Arduino library as the ZIP the IDE installs (firmware-sketch/README.md).
arduino-zip:
	$(MAKE) -C firmware-sketch/extras arduino-zip OUT=$(CURDIR)/dist
.PHONY: arduino-zip
