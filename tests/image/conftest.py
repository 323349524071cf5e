"""The image and provisioning tier: collected only by `make test-image` (BALISE_IMAGE_TIER=1)."""

from __future__ import annotations

import os

import pytest

# `make test` never collects these: they need root, the image tools and minutes of qemu/TCG.
collect_ignore_glob = [] if os.environ.get("BALISE_IMAGE_TIER") == "1" else ["test_*.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/image/" in str(item.fspath):
            item.add_marker(pytest.mark.image)
