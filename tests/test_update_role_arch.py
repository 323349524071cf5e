"""The update server's directory follows the image's architecture (issue 14): an arm64 box must
never fetch the amd64 root and UKI. The role update's update_url is rendered by Ansible itself from
its defaults, and image-rootfs.yml hands the image's architecture to the roles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE = ROOT / "ansible"


def _update_url(*extra: str) -> str:
    """update_url as Ansible renders it from the role's defaults (and ``extra`` -e values)."""
    if shutil.which("ansible") is None:
        pytest.skip("ansible is not installed (make image-deps)")
    result = subprocess.run(
        ["ansible", "localhost", "-m", "ansible.builtin.debug", "-a", "msg={{ update_url }}",
         "-e", "@roles/update/defaults/main.yml", *extra],
        cwd=ANSIBLE, capture_output=True, text=True, timeout=120, check=True,
        env={"PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
             "ANSIBLE_STDOUT_CALLBACK": "json", "LC_ALL": "C.UTF-8"},
    )  # fmt: skip
    found = re.search(r'"msg": (".*?")', result.stdout)
    assert found is not None, result.stdout
    url: str = json.loads(found.group(1))
    return url


def test_an_arm64_image_fetches_its_updates_from_the_arm64_directory() -> None:
    assert _update_url("-e", "update_arch=arm64").endswith("/arm64/")
    assert _update_url("-e", "update_arch=amd64").endswith("/amd64/")
    assert _update_url().endswith("/amd64/")


def test_the_image_build_hands_its_architecture_to_the_update_role() -> None:
    playbook = (ANSIBLE / "image-rootfs.yml").read_text(encoding="utf-8")
    add_host = playbook[playbook.index("ansible.builtin.add_host:") :]
    assert re.search(r'^\s+update_arch: "\{\{ image_arch \}\}"$', add_host, re.MULTILINE)
