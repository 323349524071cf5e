# Balise — the two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# The Python scripts without a .py extension (root helpers run by the box's /usr/bin/python3 with
# the stdlib only, and the image's build scripts): ruff and mypy find no such file by themselves,
# so lint and typecheck name them here. tests/test_root_helpers_checked.py fails if a Python
# script under ansible/, image/, scripts/ or udev/ is missing from this list.
PY_SCRIPTS := ansible/roles/hardening/files/balise-egress-apply \
	ansible/roles/provisioning/files/balise-provisioning-window \
	image/flash-check \
	scripts/build-cli-docs \
	scripts/build-wheelhouse

.PHONY: deps demo test lint typecheck imports pytest clean image-deps test-image image-arm64 boot-arm64 test-dates lock

deps:
	@scripts/ensure-deps

demo: deps
	$(BIN)/balise demo

lint: deps
	$(BIN)/ruff check src tests bench examples $(PY_SCRIPTS)
	$(BIN)/ruff format --check src tests bench examples $(PY_SCRIPTS)

typecheck: deps
	$(BIN)/mypy
	$(BIN)/mypy --strict --scripts-are-modules $(PY_SCRIPTS)

imports: deps
	$(BIN)/lint-imports

pytest: deps
	$(BIN)/pytest -q -p no:cacheprovider

test: deps lint typecheck imports pytest

# The date-sensitive tests again under libfaketime at +400 and +1,000 days (Debian's faketime,
# installed when missing): the suite passes on any day. About 3 minutes on 2 cores.
test-dates: deps
	@scripts/test-dates

# The appliance tier (ansible-lint, roles in a chroot twice, disk image booted under qemu/TCG with
# OVMF and a software TPM). Root and the Debian/PyPI registries needed; ~43 minutes on 2 cores.
image-deps: deps
	@scripts/ensure-image-deps

test-image: image-deps
	BALISE_IMAGE_TIER=1 $(BIN)/pytest -q -p no:cacheprovider --durations=30 -m image tests/image

# The arm64 disk image (Raspberry Pi 4 through a UEFI firmware, arm64 UEFI machines), the same
# layout and boot chain as amd64's, into build/image-arm64/balise.img; outside the CI tier: every
# maintainer script and initramfs runs under qemu-user. Signed with the keys of
# IMAGE_SIGNING_DIR=/path/to/keys, or with TEST keys when it is not given.
IMAGE_SIGNING_DIR ?=
image-arm64: deps
	@scripts/ensure-image-deps --arm64
	cd ansible && ansible-playbook build-image.yml -e image_arch=arm64 \
	  $(if $(IMAGE_SIGNING_DIR),-e image_signing_dir=$(abspath $(IMAGE_SIGNING_DIR)),-e image_test_keys=true)

# That image built, then booted once under qemu-system-aarch64 -M virt (AAVMF, TCG) to the kiosk's
# Accueil screen; prints how long each took (tests/image/arm64.py). Outside CI, never in test-image.
boot-arm64: deps
	@scripts/ensure-image-deps --arm64
	$(BIN)/python -m tests.image.arm64

# The hashed lock files of requirements/ (what make test installs, what the image ships), refreshed
# from pyproject.toml with this uv (PyPI only; UPGRADE=1 takes the newest versions allowed).
UV_VERSION := 0.13.9
lock:
	UV_VERSION=$(UV_VERSION) UPGRADE=$(UPGRADE) scripts/lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
