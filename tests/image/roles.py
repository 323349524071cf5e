"""The Ansible roles' files as the image-tier tests use them outside Ansible: a role's defaults
and its templates rendered the way Ansible does (undefined variables are errors)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jinja2


def role_defaults(role: Path) -> dict[str, object]:
    """``role``/defaults/main.yml. The defaults are YAML; Debian's python3 (beside ansible) has
    PyYAML, the venv has not."""
    out = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
         str(role / "defaults" / "main.yml")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    loaded: dict[str, object] = json.loads(out.stdout)
    return loaded


def render(template: Path, **values: object) -> str:
    """A role template with ``values`` (and ``ansible_managed``), strict like Ansible."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    # Ansible's filter, as Ansible defines it.
    env.filters["to_nice_json"] = lambda v, indent=4: json.dumps(
        v, indent=indent, sort_keys=True, separators=(",", ": ")
    )
    return env.from_string(template.read_text(encoding="utf-8")).render(
        ansible_managed="test", **values
    )
