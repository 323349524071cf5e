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

.PHONY: deps demo test lint typecheck imports pytest clean image-deps test-image image-arm64 test-dates lock

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
# OVMF and a software TPM). Root and the Debian/PyPI registries needed; ~25–27 minutes on 2 cores.
image-deps: deps
	@scripts/ensure-image-deps

test-image: image-deps
	BALISE_IMAGE_TIER=1 $(BIN)/pytest -q -p no:cacheprovider --durations=30 -m image tests/image

# The Raspberry Pi (arm64) rootfs, outside the CI tier: every initramfs under emulation is slow.
image-arm64: deps
	@scripts/ensure-image-deps --arm64
	cd ansible && ansible-playbook build-image.yml -e image_arch=arm64

# The hashed lock files of requirements/ (what make test installs, what the image ships), refreshed
# from pyproject.toml with this uv (PyPI only; UPGRADE=1 takes the newest versions allowed).
UV_VERSION := 0.13.9
lock:
	UV_VERSION=$(UV_VERSION) UPGRADE=$(UPGRADE) scripts/lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
