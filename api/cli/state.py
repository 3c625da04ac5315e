"""What every CLI command shares: the chosen config file, settings and catalog."""

from dataclasses import dataclass, field
from pathlib import Path

import typer

from engine.config import Settings, default_config_path, load_settings
from index.catalog import Catalog


@dataclass
class CliState:
    """Built by the root callback; settings and catalog load on first use."""

    config_path: Path | None
    _settings: Settings | None = field(default=None, repr=False)
    _catalog: Catalog | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def catalog(self) -> Catalog:
        """The initialised catalog; a clear error when `vtr init` has not run."""
        if self._catalog is None:
            self._catalog = Catalog.open(
                self.settings.catalog_url, self.settings.catalog.busy_timeout_s
            )
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()


def resolve_config_path(option: Path | None) -> Path | None:
    """`--config` when given, else ./config.toml when present, else built-in defaults."""
    return option if option is not None else default_config_path()


def state_of(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    assert isinstance(state, CliState)  # set by the root callback, always
    return state
