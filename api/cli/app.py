"""The `vtr` command line: one front door for people.

Run `vtr --help`. Every command accepts `--config PATH`; list commands accept `--json`.
A user error prints one line on stderr and exits with status 1.
"""

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.catalog_commands import collections_app, videos_app
from api.cli.demo_command import demo
from api.cli.encoders_command import encoders
from api.cli.eval_commands import eval_app
from api.cli.export_command import export_app
from api.cli.index_command import index_videos
from api.cli.output import emit, print_error, print_json, stdout
from api.cli.reindex_command import reindex_collection
from api.cli.search_command import search
from api.cli.serve_command import serve
from api.cli.state import CliState, resolve_config_path, state_of
from api.cli.synth_command import synth
from api.cli.train_commands import train_app
from engine.config import settings_as_dict, settings_as_toml
from engine.errors import VtrError
from engine.logs import configure_logging
from index.catalog import Catalog, safe_url

log = logging.getLogger(__name__)

app = typer.Typer(
    name="vtr",
    help="Video-text retrieval: index videos, then find moments by text.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(collections_app, name="collections")
app.add_typer(videos_app, name="videos")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(export_app, name="export")
app.command()(demo)
app.command("encoders")(encoders)
app.command("index")(index_videos)
app.command("search")(search)
app.command("serve")(serve)
app.command("reindex")(reindex_collection)
app.command("synth")(synth)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (default: ./config.toml if present, else built-in defaults).",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    state = CliState(resolve_config_path(config))
    ctx.obj = state
    ctx.call_on_close(state.close)
    configure_logging("DEBUG" if verbose else state.settings.log.level)


@app.command()
def init(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create the data directory and the catalog (or upgrade its schema)."""
    settings = state_of(ctx).settings
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.initialise(settings.catalog_url, settings.catalog.busy_timeout_s)
    revision = catalog.schema_revision()
    catalog.close()
    info = {
        "data_dir": str(settings.storage.data_dir),
        "catalog": safe_url(settings.catalog_url),
        "schema": revision,
    }
    emit(
        as_json,
        info,
        lambda: stdout.print(
            f"catalog ready at {info['catalog']} (schema {revision}); data in {info['data_dir']}"
        ),
    )


@config_app.command("show")
def config_show(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Print the effective configuration (file + environment overrides)."""
    state = state_of(ctx)
    source = str(state.config_path) if state.config_path else "built-in defaults"
    if as_json:
        print_json({"source": source, "settings": settings_as_dict(state.settings)})
    else:
        stdout.print(f"# source: {source}", highlight=False)
        stdout.print(settings_as_toml(state.settings), highlight=False, markup=False)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="vtr", standalone_mode=False)
    except VtrError as e:
        log.debug("command failed", exc_info=True)
        print_error(str(e))
        return 1
    except typer.Abort:
        print_error("aborted")
        return 1
    except (typer.Exit, SystemExit) as e:
        code = e.exit_code if isinstance(e, typer.Exit) else e.code
        return code if isinstance(code, int) else 0
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except typer.TyperException as e:  # a usage error: a missing or malformed argument
        show = getattr(e, "show", None)
        if callable(show):
            show()  # click's usage line and message, on stderr
        else:
            print_error(str(e))
        code = getattr(e, "exit_code", 2)
        return code if isinstance(code, int) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
