"""The image and provisioning tier: collected only by `make test-image` (BALISE_IMAGE_TIER=1);
every module is also marked `image`."""

from __future__ import annotations

import os

# `make test` never collects these: they need root, the image tools and minutes of qemu/TCG.
collect_ignore_glob = [] if os.environ.get("BALISE_IMAGE_TIER") == "1" else ["test_*.py"]
