"""The exchange folders refuse names that would leave them, and publish files whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from balise.adapters.exchange import ExchangeFolders
from balise.domain.errors import ValidationError


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
