"""The repository builds, tests and documents itself alone: no tracked file reaches for the
reference folder beside the project or for a path outside the checkout. (The examples below are
assembled from pieces, so that this file does not itself match what it looks for.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What reaching outside looks like: the reference folder beside the project, however it is
# spelled, and the folder the developers' checkouts live in.
OUTSIDE = re.compile(
    r"""\.\./shared\b"""
    r"""|["']shared["']\s*/\s*["'](samples|design|tools|hooks)"""
    r"""|/work/"""
)


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing tracked to check")
    return [ROOT / name for name in out.decode().split("\0") if name]


def _text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:4096]:
        return None  # binary (snapshots are SVG text and are checked)
    return data.decode("utf-8", errors="replace")


def test_no_tracked_file_reaches_outside_the_repository() -> None:
    here = str(ROOT)
    offenders = []
    for path in _tracked():
        if path == Path(__file__).resolve():
            continue  # the patterns themselves
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) or here in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert offenders == []


def test_the_pattern_catches_what_it_must() -> None:
    up, ref = "..", "shared"
    for bad in (
        f'SAMPLES = Path("/work/{ref}/samples")',
        f'Path(__file__).resolve().parents[2] / "{ref}" / "samples"',
        f"see {up}/{ref}/design/PROFILE.md",
    ):
        assert OUTSIDE.search(bad), bad
    assert not OUTSIDE.search("a BAL is never shared / two practitioners")


def test_the_golden_samples_and_the_profile_are_in_the_repository() -> None:
    samples = ROOT / "tests" / "data" / "samples"
    for name in ("valid.lot", "valid_corsica.lot", "arl_pos.eml", "arl_neg.eml", "noemie.eml"):
        assert (samples / name).stat().st_size > 0, name
    assert (samples / "valid.lot").stat().st_size % 128 == 0
    profile = (ROOT / "docs" / "profile.md").read_text(encoding="utf-8")
    assert "profile v0" in profile
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/profile.md" in readme and "docs/architecture.md" in readme
