"""Proof of the small file system harness: a real ENOSPC from the kernel, and room back after."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from tests.support.small_fs import SmallFs


def test_a_filled_small_fs_refuses_the_next_write_then_frees(
    small_fs: Callable[[int], SmallFs],
) -> None:
    fs = small_fs(512)
    assert 0 < fs.available() <= 512 * 1024
    fs.fill()
    with pytest.raises(OSError) as err, open(fs.root / "x", "wb") as out:
        out.write(b"x" * 8192)
        out.flush()
    assert err.value.errno == errno.ENOSPC
    fs.free()
    (fs.root / "y").write_bytes(b"y" * 8192)
    assert (fs.root / "y").stat().st_size == 8192
