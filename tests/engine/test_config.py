"""Settings: the shipped config.toml, env overrides, unknown keys, relative paths."""

import re
from pathlib import Path

import pytest

from engine.config import Settings, load_settings, settings_as_toml
from engine.errors import ConfigError

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"


def test_shipped_config_equals_builtin_defaults() -> None:
    assert load_settings(REPO_CONFIG).model_dump(exclude={"storage"}) == Settings().model_dump(
        exclude={"storage"}
    )
    assert load_settings(REPO_CONFIG).storage.data_dir == REPO_CONFIG.parent / "data"


def test_every_key_in_shipped_config_is_commented() -> None:
    lines = REPO_CONFIG.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            assert lines[number - 1].startswith("#"), f"key without comment: {line}"


def test_every_setting_appears_in_shipped_config() -> None:
    shipped = REPO_CONFIG.read_text()
    for section, values in Settings().model_dump().items():
        assert f"[{section}]" in shipped
        for key in values:
            assert re.search(rf"^{key} =", shipped, re.M), f"{section}.{key} missing"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[catalog]\nurll = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'catalog\.urll'"):
        load_settings(path)


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[catalogue]\nurl = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'catalogue'"):
        load_settings(path)


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[catalog]\nbusy_timeout_s = -1\n")
    with pytest.raises(ConfigError, match=r"'catalog\.busy_timeout_s'"):
        load_settings(path)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[catalog\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[catalog]\nurl = "sqlite:///file.db"\n[log]\nlevel = "ERROR"\n')
    monkeypatch.setenv("VTR_CATALOG__URL", "sqlite:///env.db")
    settings = load_settings(path)
    assert settings.catalog_url == "sqlite:///env.db"
    assert settings.log.level == "ERROR"


def test_unknown_environment_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTR_CATALOG__URLL", "x")
    with pytest.raises(ConfigError, match=r"catalog\.urll"):
        load_settings(None)


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "config.toml"
    path.write_text('[storage]\ndata_dir = "store"\n')
    settings = load_settings(path)
    assert settings.storage.data_dir == tmp_path / "sub" / "store"
    assert settings.catalog_url == f"sqlite:///{tmp_path / 'sub' / 'store' / 'vtr.db'}"


def test_toml_rendering_round_trips(tmp_path: Path) -> None:
    settings = load_settings(REPO_CONFIG)
    path = tmp_path / "config.toml"
    path.write_text(settings_as_toml(settings))
    assert load_settings(path) == settings
