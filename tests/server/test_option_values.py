"""What ``corral serve`` accepts for each option value, and the one line it says otherwise."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import trustme

from server.run import option_values
from server.run.cli import main


@pytest.mark.parametrize("text", ["0", "1", "8080", "65535"])
def test_a_port_from_0_to_65535_is_accepted(text: str) -> None:
    assert option_values.port(text) == int(text)


@pytest.mark.parametrize("text", ["65536", "99999", "-1", "80.5", "http", ""])
def test_any_other_port_is_refused_naming_the_value_and_the_range(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        option_values.port(text)
    assert str(refused.value) == f"{text!r} is not a port: allowed 0 to 65535 (0 picks a free one)"


def test_a_count_is_a_whole_number_of_at_least_one() -> None:
    assert option_values.positive_count("1") == 1
    assert option_values.positive_count("10000") == 10000
    for text in ("0", "-3", "2.5", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"not allowed: a whole number >= 1"):
            option_values.positive_count(text)


def test_seconds_are_a_finite_number_above_zero() -> None:
    assert option_values.positive_seconds("0.5") == 0.5
    assert option_values.positive_seconds("30") == 30.0
    for text in ("0", "-5", "nan", "inf", "-inf", "soon"):
        with pytest.raises(argparse.ArgumentTypeError) as refused:
            option_values.positive_seconds(text)
        allowed = "a number of seconds > 0 (like 0.5 or 30)"
        assert str(refused.value) == f"{text!r} is not allowed: {allowed}"


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--port", "99999", "is not a port: allowed 0 to 65535"),
        ("--port", "65536", "is not a port: allowed 0 to 65535"),
        ("--drain-timeout", "-5", "is not allowed: a number of seconds > 0"),
        ("--handshake-timeout", "0", "is not allowed: a number of seconds > 0"),
        ("--block-threshold", "-1", "is not allowed: a number of seconds > 0"),
        ("--max-connections", "0", "is not allowed: a whole number >= 1"),
        ("--workers", "0", "is not allowed: a whole number >= 1"),
    ],
)
def test_every_numeric_option_is_checked_before_anything_starts(
    capsys: pytest.CaptureFixture[str], option: str, value: str, allowed: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "examples.echo:app", option, value])
    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert said.startswith(f"corral: argument {option}: {value!r} {allowed}")
    assert said.count("\n") == 1


def test_pem_problem_wants_the_right_block() -> None:
    certificate = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    assert option_values.pem_problem(certificate, option_values.CERTIFICATE) is None
    assert option_values.pem_problem(key, option_values.PRIVATE_KEY) is None
    assert option_values.pem_problem(key, option_values.CERTIFICATE) == (
        "is not a valid certificate (no PEM certificate block in it)"
    )
    assert option_values.pem_problem(b"hello", option_values.PRIVATE_KEY) == (
        "is not a valid private key (no PEM private key block in it)"
    )


@pytest.fixture
def pems(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate and its key, each in its own PEM file."""
    issued = trustme.CA().issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    issued.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


def _serve_says(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What ``corral serve examples.echo:app *args`` says before it would start (status 2)."""
    assert main(["serve", "examples.echo:app", *args]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1, said
    return said.strip()


def test_a_missing_certificate_file_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.pem"
    said = _serve_says(capsys, "--certfile", str(missing))
    assert said == f"corral: --certfile {missing}: cannot read it (No such file or directory)"


def test_a_missing_key_file_is_named(
    capsys: pytest.CaptureFixture[str], pems: tuple[Path, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "nokey.pem"
    said = _serve_says(capsys, "--certfile", str(pems[0]), "--keyfile", str(missing))
    assert said == f"corral: --keyfile {missing}: cannot read it (No such file or directory)"


def test_a_certificate_that_is_not_pem_is_named(
    capsys: pytest.CaptureFixture[str], pems: tuple[Path, Path]
) -> None:
    certfile, keyfile = pems
    said = _serve_says(capsys, "--certfile", str(keyfile), "--keyfile", str(keyfile))
    assert said == (
        f"corral: --certfile {keyfile} is not a valid certificate (no PEM certificate block in it)"
    )


def test_a_broken_certificate_body_is_named(
    capsys: pytest.CaptureFixture[str], pems: tuple[Path, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    said = _serve_says(capsys, "--certfile", str(broken), "--keyfile", str(pems[1]))
    assert said.startswith(f"corral: --certfile {broken} is not a valid certificate (")


def test_a_key_that_does_not_fit_is_named(
    capsys: pytest.CaptureFixture[str], pems: tuple[Path, Path], tmp_path: Path
) -> None:
    other_key = tmp_path / "other.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    said = _serve_says(capsys, "--certfile", str(pems[0]), "--keyfile", str(other_key))
    assert said.startswith(
        f"corral: --keyfile {other_key} is not a valid private key, or not the key of "
        f"--certfile {pems[0]} ("
    )


def test_an_app_module_with_a_syntax_error_is_named_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken_app.py"
    broken.write_text("from server import App\n\napp = App([]\n")
    try:
        compile(broken.read_text(), str(broken), "exec")
    except SyntaxError as error:
        said = option_values.import_failure("broken_app", error)
    assert said == f"cannot import 'broken_app': SyntaxError: '(' was never closed at {broken}:3"


def test_an_app_module_that_raises_is_named_with_the_raising_line(tmp_path: Path) -> None:
    source = tmp_path / "raising_app.py"
    source.write_text("x = 1\nraise RuntimeError('no config\\nsecond line')\n")
    try:
        exec(compile(source.read_text(), str(source), "exec"), {})
    except RuntimeError as error:
        said = option_values.import_failure("raising_app", error)
    assert said == f"cannot import 'raising_app': RuntimeError: no config at {source}:2"


def test_a_missing_app_module_says_so_without_a_location() -> None:
    error = ModuleNotFoundError("No module named 'nowhere'", name="nowhere")
    said = option_values.import_failure("nowhere.app", error)
    assert said == "cannot import 'nowhere.app': No module named 'nowhere'"
