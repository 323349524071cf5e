"""`balise demo`: the embedded defaults (for now: a demo data dir and KEK, then the doctor)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from balise.adapters.kek import create_key_file
from balise.bootstrap import open_context
from balise.doctor import run_checks


def run_demo(args: argparse.Namespace) -> int:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="balise-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    kek_file = base / "demo.kek"
    if not kek_file.exists():
        create_key_file(kek_file)
    env = dict(os.environ, BALISE_KEK_FILE=str(kek_file))
    data_dir = base / "data"
    ctx = open_context(data_dir, actor="demo", env=env)
    try:
        if ctx.params.get("mode") != "demo" or ctx.vault.get("", "mode") is None:
            ctx.params.set("mode", "demo")
    finally:
        ctx.close()
    print(f"Démonstration Balise : données dans {data_dir}, clé de démonstration {kek_file}")
    checks = run_checks(data_dir, env=env)
    for check in checks:
        print(check.line())
    return 1 if any(c.status == "problem" for c in checks) else 0
