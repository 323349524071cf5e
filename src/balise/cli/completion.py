"""Bash completion for `balise`, generated from its argparse parser (nothing is written by hand,
so a new command or option completes as soon as it exists).

    python -m balise.cli.completion > /usr/share/bash-completion/completions/balise

The script holds three tables read by one function: the subcommands of each command path, the
options of each, and what follows an option that takes a value (a file, a folder, one of its
choices, or free text). The image installs it (ansible/roles/balise).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

# Placeholders whose value is a path (cli/__init__.py METAVARS, the positionals' metavars).
FILE_METAVARS = frozenset({"FICHIER", "ARCHIVE", "archive"})
DIR_METAVARS = frozenset({"DOSSIER"})

FUNCTION = r"""
_balise() {
    local cur="${COMP_WORDS[COMP_CWORD]}" path="balise" word kind i skip=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if ((skip)); then
            skip=0
            continue
        fi
        if [[ $word == -* ]]; then
            [[ $word != *=* && -n ${_balise_values["$path|$word"]+x} ]] && skip=1
            continue
        fi
        [[ " ${_balise_subs["$path"]} " == *" $word "* ]] && path="$path $word"
    done
    COMPREPLY=()
    if ((skip)); then
        kind="${_balise_values["$path|${COMP_WORDS[COMP_CWORD-1]}"]}"
        case "$kind" in
            file) mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
            dir) mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
            choices:*) mapfile -t COMPREPLY < <(compgen -W "${kind#choices:}" -- "$cur") ;;
        esac
        return 0
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${_balise_opts["$path"]}" -- "$cur")
    elif [[ -n ${_balise_subs["$path"]} ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${_balise_subs["$path"]}" -- "$cur")
    elif [[ -n ${_balise_files["$path"]+x} ]]; then
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
    return 0
}
complete -o filenames -F _balise balise
"""


def _commands(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, f"{path} {name}")


def _value_kind(action: argparse.Action) -> str:
    if action.choices is not None:
        return "choices:" + " ".join(str(c) for c in action.choices)
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar in FILE_METAVARS:
        return "file"
    if metavar in DIR_METAVARS:
        return "dir"
    return "text"


def bash_script(parser: argparse.ArgumentParser) -> str:
    subs: list[str] = []
    opts: list[str] = []
    values: list[str] = []
    files: list[str] = []
    for path, command in _commands(parser, "balise"):
        names: list[str] = []
        options: list[str] = []
        takes_file = False
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                names += list(action.choices)
            elif action.option_strings:
                options += action.option_strings
                if action.nargs != 0:
                    for option in action.option_strings:
                        values.append(f'    ["{path}|{option}"]="{_value_kind(action)}"')
            elif _value_kind(action) == "file":
                takes_file = True
        if names:
            subs.append(f'    ["{path}"]="{" ".join(names)}"')
        opts.append(f'    ["{path}"]="{" ".join(options)}"')
        if takes_file:
            files.append(f'    ["{path}"]=1')
    tables = [
        ("_balise_subs", subs),
        ("_balise_opts", opts),
        ("_balise_values", values),
        ("_balise_files", files),
    ]
    text = [
        "# bash completion for balise — generated from its argparse parser by "
        "python -m balise.cli.completion; do not edit."
    ]
    for name, rows in tables:
        text.append(f"declare -gA {name}=(\n" + "\n".join(rows) + "\n)")
    return "\n".join(text) + "\n" + FUNCTION


def main() -> int:
    from balise.cli import build_parser

    sys.stdout.write(bash_script(build_parser()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
