"""The `vtr` CLI: commands, --json output and one-line errors (no tracebacks)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli.app import main


@pytest.fixture
def config_file(tmp_path: Path, catalog_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndata_dir = "data"\n[catalog]\nurl = "{catalog_url}"\n')
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli.app", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("init", "config", "collections", "videos"):
        assert command in result.stdout


def test_full_catalog_flow(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    cfg = ["--config", str(config_file)]
    code, out, _ = run(capsys, *cfg, "init", "--json")
    assert code == 0 and json.loads(out)["schema"] == "0001"
    assert (config_file.parent / "data").is_dir()

    code, out, _ = run(capsys, *cfg, "collections", "create", "demo", "--json")
    assert code == 0 and json.loads(out)["name"] == "demo"
    code, out, _ = run(capsys, *cfg, "collections", "list", "--json")
    assert [c["name"] for c in json.loads(out)] == ["demo"]
    code, out, _ = run(capsys, *cfg, "collections", "list")
    assert code == 0 and "demo" in out and "clip-vit-b32" in out
    code, out, _ = run(capsys, *cfg, "videos", "list", "--collection", "demo", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, *cfg, "collections", "delete", "demo", "--json")
    assert code == 0 and json.loads(out)["name"] == "demo"


def test_config_show(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, _ = run(capsys, "--config", str(config_file), "config", "show", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["source"] == str(config_file)
    assert shown["settings"]["storage"]["data_dir"] == str(config_file.parent / "data")
    code, out, _ = run(capsys, "--config", str(config_file), "config", "show")
    assert code == 0 and "[catalog]" in out


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("bad-key", ["collections", "list"], "unknown key 'catalog.urll'"),
        ("no-init", ["collections", "list"], "run `vtr init` first"),
        ("init", ["collections", "delete", "nope"], "unknown collection 'nope'"),
        ("init", ["videos", "show", "42"], "unknown video id 42"),
        ("missing-config", ["collections", "list"], "config file not found"),
    ],
)
def test_user_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    config_file: Path,
    setup: str,
    args: list[str],
    message: str,
) -> None:
    if setup == "bad-key":
        config_file.write_text('[catalog]\nurll = "x"\n')
    if setup == "init":
        assert run(capsys, "--config", str(config_file), "init")[0] == 0
    path = tmp_path / "absent.toml" if setup == "missing-config" else config_file
    code, out, err = run(capsys, "--config", str(path), *args)
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_console_script_exit_status(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli.app", "collections", "list"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: no catalog at")


def test_usage_error_is_short_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "collections", "create")
    assert code == 2
    assert "Missing" in err
    assert "Traceback" not in err + out


def test_encoders_lists_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "encoders", "--json")
    assert code == 0
    names = [row["name"] for row in json.loads(out)]
    assert "clip-vit-b32" in names
    assert "tiny-random" in names
