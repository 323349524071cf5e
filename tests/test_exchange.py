"""The exchange folders refuse names that would leave them, and publish files whole: one at a
time, or in batches that leave alone what is already there and nothing half written."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from balise.adapters.exchange import ExchangeFolders
from balise.domain.errors import ValidationError
from tests.support.small_fs import SmallFs


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b", "..", "", "x/\0y"])
def test_names_leaving_the_folders_are_refused(tmp_path: Path, name: str) -> None:
    folders = ExchangeFolders(tmp_path)
    with pytest.raises(ValidationError):
        folders.publish(name, b"x")
    with pytest.raises(ValidationError):
        folders.read(name, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depot", "retours", "sauvegardes"]


def test_publish_writes_whole_files_in_subfolders(tmp_path: Path) -> None:
    folders = ExchangeFolders(tmp_path)
    folders.publish("00000012345678/lot-261122-007.statut.json", b"{}\n", durable=False)
    folders.publish("refus/lot.txt", b"motif\n")
    folders.sync()
    assert (
        tmp_path / "retours" / "00000012345678" / "lot-261122-007.statut.json"
    ).read_bytes() == b"{}\n"
    assert (tmp_path / "retours" / "refus" / "lot.txt").read_bytes() == b"motif\n"
    assert not list((tmp_path / "retours").rglob(".*.tmp"))


def _seen(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()
    }


def test_a_batch_writes_whole_files_and_leaves_alone_those_already_there(tmp_path: Path) -> None:
    folders = ExchangeFolders(tmp_path)
    folder = tmp_path / "retours" / "00000012345678"
    batch = [(f"00000012345678/arl-{n:03d}.retour", b"ARL %d\n" % n) for n in range(5)]
    assert folders.publish_batch(batch) == 5
    before = _seen(folder)
    assert [before[f"arl-{n:03d}.retour"][2] for n in range(5)] == [
        b"ARL %d\n" % n for n in range(5)
    ]
    # the same batch again: nothing written; one changed and one new file: those two only
    assert folders.publish_batch(batch) == 0
    assert _seen(folder) == before
    changed = [*batch[:4], (batch[4][0], b"ARL 4, second version\n")]
    changed.append(("00000012345678/lot-007.statut.json", b"{}\n"))
    assert folders.publish_batch(changed) == 2
    after = _seen(folder)
    assert {n for n in after if after[n] != before.get(n)} == {
        "arl-004.retour",
        "lot-007.statut.json",
    }
    assert after["arl-004.retour"][2] == b"ARL 4, second version\n"
    assert not list((tmp_path / "retours").rglob(".*.tmp"))
    # a name that would leave retours/ refuses the whole batch before anything is written
    with pytest.raises(ValidationError):
        folders.publish_batch([("00000012345678/nouveau.retour", b"x"), ("../evil", b"x")])
    assert not (folder / "nouveau.retour").exists()


def test_a_batch_on_a_full_disk_leaves_no_file_half_written(
    small_fs: Callable[[int], SmallFs],
) -> None:
    fs = small_fs(256)
    folders = ExchangeFolders(fs.root / "echange")
    folders.publish_batch([("00000012345678/ancien.retour", b"kept\n")])
    fs.fill(leave=8 * 1024)
    batch = [(f"00000012345678/arl-{n:03d}.retour", bytes(4096)) for n in range(8)]
    with pytest.raises(OSError) as caught:
        folders.publish_batch(batch)
    assert caught.value.errno == errno.ENOSPC
    names = sorted(p.name for p in (fs.root / "echange" / "retours").rglob("*") if p.is_file())
    assert names == ["ancien.retour"]  # no half file, no temporary file, nothing renamed
    fs.free()
    assert folders.publish_batch(batch) == 8
