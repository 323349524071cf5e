"""What the `balise` command says to a person: argparse's own words in French, help on every
argument, the environment variables in the help, exit statuses by class, and never a Python repr
or traceback when something fails."""

from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import balise.cli as cli
import balise.cli.egress as egress
from balise.cli import build_parser, main
from balise.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from balise.cli.parsing import Parser, UsageError
from balise.cli.parsing import install as install_french
from tests.support.balise_env import BaliseEnv

SRC = Path(__file__).resolve().parent.parent / "src" / "balise"
# argparse's English, as words (French shares "options", "argument", "invalide"...).
ENGLISH = re.compile(
    r"\b(usage|error|the following|required|invalid|choose from|unrecognized|expected|"
    r"show this help|positional arguments|optional arguments|not allowed|one of the|"
    r"ambiguous|could match|ignored explicit|subcommands|argument(s)? is)\b"
)
# What a Python repr or a traceback looks like on a terminal.
REPR = re.compile(
    r"Traceback|\b[A-Z]\w+\(\w+=|<\w[\w.]* object at|\[Errno \d+\]|\b\w+(Error|Exception)\b\(|"
    r"^\w+(Error|Exception): ",
    re.MULTILINE,
)


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from parsers(child)


# Each command line provokes one of argparse's messages.
USAGE_ERRORS = [
    ([], "arguments obligatoires manquants"),
    (["nimporte"], "choix invalide"),
    (["doctor", "--inconnue"], "arguments non reconnus"),
    (["lots", "show"], "arguments obligatoires manquants : ID"),
    (["lots", "show", "quatre"], "nombre entier attendu"),
    (["params", "get", "mode", "--profile"], "une valeur est attendue"),
    (["params", "get", "x", "--profile", "a", "--organism", "b"], "incompatible avec"),
    (["organisms", "fetch"], "l'un de ces arguments est obligatoire"),
    (["kiosk", "--lang", "de"], "choix invalide"),
    (["doctor", "--json=1"], "ignorée : cette option n'en prend pas"),
    (["agent", "--interval-scale", "vite"], "nombre attendu"),
    (["params"], "arguments obligatoires manquants : ACTION"),
]


@pytest.mark.parametrize(("argv", "words"), USAGE_ERRORS, ids=lambda v: " ".join(v) or "-")
def test_usage_errors_are_french_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("utilisation : balise") and " : erreur : " in err
    assert words in err, err
    assert not ENGLISH.search(err), err


def test_argparse_catalogue_covers_messages_the_box_cannot_provoke() -> None:
    install_french()
    parser = Parser(prog="essai")
    parser.add_argument("--valeur-a")
    parser.add_argument("--valeur-b")
    parser.add_argument("--nombre", type=int)
    parser.add_argument("--deux", nargs=2)
    for argv in (["--valeur", "x"], ["--nombre", "x"], ["--deux", "1"]):
        with pytest.raises(UsageError) as caught:
            parser.parse_args(argv)
        assert not ENGLISH.search(caught.value.message), caught.value.message
        assert "valeur" in caught.value.message or "attendu" in caught.value.message


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["lots", "--help"], ["lots", "show", "-h"], ["backup", "-h"], ["params", "-h"]],
    ids=" ".join,
)
def test_help_is_french(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("utilisation : balise")
    assert "afficher cette aide et quitter" in out and "options:" in out
    assert not ENGLISH.search(out.replace('"error"', "")), out  # less the JSON key shown


def test_every_argument_has_help_and_a_french_placeholder() -> None:
    for parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{parser.prog} {choice.dest}: no help"
                continue
            assert action.help and action.help != argparse.SUPPRESS, (parser.prog, action.dest)
            takes_value = action.option_strings and action.nargs != 0
            if takes_value and action.choices is None:
                assert action.metavar, f"{parser.prog} {action.option_strings}: no placeholder"


def test_help_lists_every_environment_variable_the_code_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    read = re.compile(r"(?:environ|env)(?:\.get\(|\[)\s*\"([A-Z][A-Z0-9_]+)\"")
    names = {name for path in SRC.rglob("*.py") for name in read.findall(path.read_text("utf-8"))}
    assert {"BALISE_HOME", "BALISE_KEK_FILE", "CREDENTIALS_DIRECTORY"} <= names
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    missing = sorted(name for name in names if name not in out)
    assert not missing, f"not in balise --help: {missing}"
    assert "codes de sortie" in out and "--allow-warnings" in out


def test_exit_status_by_class(balise_env: BaliseEnv) -> None:
    # 0: the work is done.
    assert balise_env.run("params", "set", "mode", "test").returncode == EXIT_OK
    assert balise_env.run("params", "list").returncode == EXIT_OK
    # 1: a failure (an unknown lot), or a problem found (doctor's warnings, a parameter unset).
    unknown = balise_env.run("lots", "show", "7")
    assert unknown.returncode == EXIT_FAILURE and "[LOT_UNKNOWN]" in unknown.stderr
    assert balise_env.run("params", "get", "crl_url").returncode == EXIT_FAILURE
    doctor = balise_env.run("doctor")
    assert doctor.returncode == EXIT_FAILURE and "PROBLÈME" not in doctor.stdout
    assert balise_env.run("doctor", "--allow-warnings").returncode == EXIT_OK
    # 2: the command line itself is wrong.
    assert balise_env.run("lots", "montre", "7").returncode == EXIT_USAGE
    assert balise_env.run("doctor", "--tolerant").returncode == EXIT_USAGE


def test_failures_show_words_never_a_repr(balise_env: BaliseEnv, tmp_path: Path) -> None:
    assert balise_env.run("params", "set", "mode", "test").returncode == 0
    not_a_folder = tmp_path / "fichier"
    not_a_folder.write_text("x")
    env_file_home = dict(balise_env.env, BALISE_HOME=str(not_a_folder / "data"))
    runs = [
        balise_env.run("import", str(tmp_path / "absent.lot"), str(tmp_path)),
        balise_env.run("lots", "show", "12"),
        balise_env.run("params", "set", "smtp.port", "soixante", "--profile", "p1"),
        balise_env.run("journal", "verify", env=env_file_home),
        balise_env.run("backup", "verify", str(tmp_path / "absente.sauvegarde"), stdin="x\n"),
        balise_env.run("restore", str(not_a_folder), stdin="x\n"),
        balise_env.run("kek", "create", str(not_a_folder)),
        balise_env.run("egress", "list", "--output", str(tmp_path / "absent" / "liste")),
    ]
    for run in runs:
        assert run.returncode == EXIT_FAILURE, run.args
        assert run.stderr.strip(), run.args
        assert not REPR.search(run.stdout + run.stderr), (run.args, run.stdout, run.stderr)


def test_an_unexpected_exception_is_words_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_args: argparse.Namespace) -> int:
        raise RuntimeError("detail interne <Objet at 0x1>")

    # The command as the parser finds it: imported by name, or looked up in its module.
    monkeypatch.setattr(cli, "cmd_egress_list", broken, raising=False)
    monkeypatch.setattr(egress, "cmd_egress_list", broken)
    monkeypatch.delenv("BALISE_DEBUG", raising=False)
    assert main(["egress", "list", "--json"]) == EXIT_FAILURE
    out, err = capsys.readouterr()
    assert "erreur interne inattendue" in err and "[INTERNAL]" in err
    assert '"code": "INTERNAL"' in out
    assert not REPR.search(out + err) and "0x1" not in out + err
    monkeypatch.setenv("BALISE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["egress", "list"])


def test_demo_failures_are_words() -> None:
    from balise.app.demo import failure_words

    missing = FileNotFoundError(2, "fichier absent", "/opt/pcscd")
    assert failure_words(missing)[0] == "/opt/pcscd : fichier ou dossier introuvable"
    failed = subprocess.CalledProcessError(1, ["/usr/sbin/dovecot", "-c", "x"])
    assert failure_words(failed) == ("dovecot a échoué (code 1)", "dovecot failed (status 1)")
    slow = subprocess.TimeoutExpired(["softhsm2-util", "--init-token"], 30)
    assert failure_words(slow)[0] == "softhsm2-util n'a pas répondu en 30 s"
    for exc in (missing, failed, slow, ValueError("valeur illisible")):
        assert not REPR.search(" ".join(failure_words(exc))), exc
