"""Typed settings: `config.toml` -> `Settings`, with `VTR_SECTION__KEY` env overrides.

Precedence: environment > config file > built-in defaults. The built-in defaults are the
values in the repository's `config.toml` (a test keeps the two identical), so vtr runs
the same with or without that file. Unknown keys are rejected with their dotted name.
Relative paths resolve against the config file's directory (the working directory when
no file is used). Nothing is built at import: call `load_settings`.
"""

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.errors import ConfigError

DEFAULT_CONFIG_NAME = "config.toml"
ENV_PREFIX = "VTR_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSettings(_Section):
    data_dir: Path = Path("data")


class CatalogSettings(_Section):
    url: str = ""
    busy_timeout_s: float = Field(default=30.0, gt=0)


class EncoderSettings(_Section):
    name: str = "clip-vit-b32"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class IngestSettings(_Section):
    clip_seconds: float = Field(default=2.0, gt=0)
    frames_per_clip: int = Field(default=1, ge=1, le=16)
    batch_size: int = Field(default=32, ge=1)
    workers: int = Field(default=2, ge=1)
    extensions: list[str] = [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg"]
    shard_mb: int = Field(default=1024, ge=1)


class LevelSettings(_Section):
    strategy: str = "pooling"
    action_window_clips: int = Field(default=4, ge=1)
    action_stride_clips: int = Field(default=2, ge=1)
    entity_threshold: float = Field(default=0.9, ge=-1.0, le=1.0)


class IndexSettings(_Section):
    memory_budget_mb: int = Field(default=2048, ge=1)
    exact_max_vectors: int = Field(default=50000, ge=0)
    ivf_flat_max_vectors: int = Field(default=200000, ge=0)
    recall_target: float = Field(default=0.95, gt=0, le=1)
    recall_k: int = Field(default=100, ge=1)
    tune_queries: int = Field(default=200, ge=1)
    factory: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    search_threads: int = Field(default=0, ge=0)


class SearchSettings(_Section):
    default_collection: str = "default"
    top_k: int = Field(default=10, ge=1)
    max_top_k: int = Field(default=100, ge=1)
    candidates: int = Field(default=20, ge=1)
    k_per_level: int = Field(default=200, ge=1)
    weight_global: float = Field(default=1.0, ge=0)
    weight_action: float = Field(default=1.0, ge=0)
    weight_entity: float = Field(default=0.5, ge=0)
    normalisation: Literal["none", "minmax", "zscore"] = "minmax"
    stage1_weight: float = Field(default=0.3, ge=0, le=1)
    moments_per_video: int = Field(default=3, ge=1)
    max_query_chars: int = Field(default=1000, ge=1)


class LocalizerSettings(_Section):
    name: Literal["similarity", "mesm", "spans"] = "similarity"
    checkpoint: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_clips: int = Field(default=75, ge=2)
    overlap_clips: int = Field(default=15, ge=0)
    max_windows: int = Field(default=16, ge=1)
    nms_iou: float = Field(default=0.5, ge=0, le=1)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    api_keys: list[SecretStr] = []  # masked in `vtr config show`
    media_roots: list[Path] = []
    max_upload_mb: int = Field(default=2048, ge=1)
    max_request_kb: int = Field(default=64, ge=1)
    cors_origins: list[str] = []
    thumbnail_width: int = Field(default=320, ge=16, le=1920)
    thumbnail_cache: int = Field(default=512, ge=0)

    @field_validator("api_keys")
    @classmethod
    def _strong_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        values = [k.get_secret_value() for k in keys]
        if any(len(v) < 16 or v != v.strip() for v in values):
            raise ValueError("every API key needs at least 16 characters and no outer spaces")
        return keys

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        bad = [o for o in origins if o != "*" and not o.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"CORS origins must be '*' or start with http(s)://: {bad}")
        return origins


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """The whole configuration; one attribute per `[section]` of config.toml."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    storage: StorageSettings = StorageSettings()
    catalog: CatalogSettings = CatalogSettings()
    encoder: EncoderSettings = EncoderSettings()
    ingest: IngestSettings = IngestSettings()
    levels: LevelSettings = LevelSettings()
    index: IndexSettings = IndexSettings()
    search: SearchSettings = SearchSettings()
    localizer: LocalizerSettings = LocalizerSettings()
    api: ApiSettings = ApiSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: the environment overrides the file (passed as init data).
        return (env_settings, init_settings)

    @property
    def catalog_url(self) -> str:
        """The catalog's SQLAlchemy URL: `catalog.url`, else SQLite in the data dir."""
        return self.catalog.url or f"sqlite:///{self.storage.data_dir / 'vtr.db'}"


def _describe(error: ValidationError, origin: str) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        else:
            problems.append(f"'{key}': {item['msg']}")
    return f"invalid configuration ({origin}): " + "; ".join(problems)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e


def default_config_path() -> Path | None:
    """`./config.toml` when it exists, else None (built-in defaults)."""
    candidate = Path.cwd() / DEFAULT_CONFIG_NAME
    return candidate if candidate.is_file() else None


def load_settings(path: Path | None = None) -> Settings:
    """Load settings from `path` (or built-in defaults when None) plus the environment."""
    data = _read_toml(path) if path is not None else {}
    env_keys = sorted(k for k in os.environ if k.startswith(ENV_PREFIX))
    origin = f"{path or 'built-in defaults'}" + (
        f" + env {', '.join(env_keys)}" if env_keys else ""
    )
    try:
        settings = Settings(**data)
    except ValidationError as e:
        raise ConfigError(_describe(e, origin)) from e
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    storage = settings.storage.model_copy(
        update={"data_dir": (base_dir / settings.storage.data_dir).resolve()}
    )
    api = settings.api.model_copy(
        update={"media_roots": [(base_dir / root).resolve() for root in settings.api.media_roots]}
    )
    return settings.model_copy(update={"storage": storage, "api": api})


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain JSON-compatible data, section by section."""
    result: dict[str, Any] = json.loads(settings.model_dump_json())
    return result


def settings_as_toml(settings: Settings) -> str:
    """The effective settings rendered as TOML (scalars and flat lists only)."""
    lines: list[str] = []
    for section, values in settings_as_dict(settings).items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)
