#!/usr/bin/env python
"""Front door: ``python trainer/cli_main.py [ACTION] [flags]``.

Training is the default action; ``dashboard`` serves the web dashboard and ``watch`` (or
``--watch``) shows the same in the terminal. ``--help``, ``--print-config``, ``--validate`` and
``--config-reference`` import no torch / transformers / trl / datasets, so they answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: the repository root replaces the script's own folder on the path, so
    # sibling modules never shadow top-level packages or the standard library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from trainer.config import SHORT_FLAGS, ConfigError, ConfigLoader, TrainerConfig  # noqa: E402
from trainer.config.loader import CONFIG_FORMATS, default_config_path, dump_config, flag_dest  # noqa: E402
from trainer.config.errors import section_at  # noqa: E402

EXIT_OK, EXIT_USAGE = 0, 2


def _field_doc(path: str) -> str:
    *sections, leaf = path.split(".")
    return section_at(TrainerConfig, sections).model_fields[leaf].description or ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainer",
        description="Fine-tune a Hugging Face causal LM on your data with a data profile.",
        epilog="Any config key can be set with --set PATH=VALUE; see --config-reference. "
        "Other actions: 'dashboard [--port N]' (web page), 'watch' (terminal view), "
        "'export RUN_OR_MODEL_DIR --to ollama|merged'; each has its own --help.",
    )
    parser.add_argument(
        "--config", metavar="PATH",
        help="JSON or YAML (.yaml / .yml) config file (default: ./config.json, config.yaml or config.yml if present).",
    )
    for flag in SHORT_FLAGS:
        extra = f" Clears {', '.join(flag.clears)}." if flag.clears else ""
        parser.add_argument(
            flag.flag,
            dest=flag_dest(flag),
            metavar=flag.metavar,
            nargs=flag.nargs,
            help=f"{_field_doc(flag.path)} [{flag.path}]{extra}",
        )
    parser.add_argument(
        "--set",
        action="append",
        metavar="PATH=VALUE",
        help="Set any config key by dotted path, e.g. --set hyperparams.learning_rate=1e-4.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_const",
        const="true",
        dest="dry_run",
        help="Prepare the data and print the data report; train nothing.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--print-config",
        action="store_true",
        help="Print the merged config with each value's source (as --format says), then exit.",
    )
    mode.add_argument(
        "--validate",
        action="store_true",
        help="Check the config and the paths it names; train nothing.",
    )
    mode.add_argument(
        "--watch",
        action="store_true",
        help="Show the live training and daemon status in the terminal (same as 'watch').",
    )
    mode.add_argument(
        "--config-reference",
        action="store_true",
        help="Print the configuration reference (Markdown) generated from the schema.",
    )
    parser.add_argument(
        "--format", choices=CONFIG_FORMATS, default="json", help="What --print-config writes: json (default) or yaml."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at DEBUG level.")
    return parser


def load_config(args: argparse.Namespace) -> tuple[TrainerConfig, ConfigLoader]:
    loader = ConfigLoader(default_config_path(args.config))
    if args.dry_run:
        args.set = [*(args.set or []), "debug.dry_run=true"]
    if args.verbose:
        args.set = [*(args.set or []), "debug.verbose=true"]
    return loader.merge_with_cli_args(args), loader


def _print_config(config: TrainerConfig, loader: ConfigLoader, args: argparse.Namespace) -> int:
    print(dump_config(loader.provenance(config), args.format), end="")
    return EXIT_OK


def _validate(config: TrainerConfig, loader: ConfigLoader, args: argparse.Namespace) -> int:
    from trainer.core.preflight import check_config

    problems = check_config(config)
    if problems:
        raise ConfigError(problems)
    source = loader.path or "defaults only"
    print(f"config OK ({source}); profile {config.profile.name}, model {config.model.path}")
    return EXIT_OK


def _train(config: TrainerConfig, loader: ConfigLoader, args: argparse.Namespace) -> int:
    from trainer.core.runner import run_from_cli

    return run_from_cli(config, loader)


def _watch(config: TrainerConfig, loader: ConfigLoader, args: argparse.Namespace) -> int:
    from trainer.dashboard.terminal import watch

    return watch(dashboard_sources(config), once=getattr(args, "once", False))


# Mode flags -> handler; the first flag that is set wins (they are mutually exclusive).
MODES: dict[str, Callable[[TrainerConfig, ConfigLoader, argparse.Namespace], int]] = {
    "print_config": _print_config,
    "validate": _validate,
    "watch": _watch,
}


def dashboard_sources(config: TrainerConfig):
    from trainer.dashboard.snapshot import Sources

    return Sources(
        config.resolve_path(config.system.status_file),
        config.resolve_path(config.daemon.status_file),
        config.resolve_path(config.output.output_dir),  # the runs the page lists and compares
    )


def build_view_parser(action: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"trainer {action}",
        description="Serve the web dashboard (read-only, local)."
        if action == "dashboard"
        else "Show the live training and daemon status in the terminal.",
    )
    parser.add_argument("--config", metavar="PATH", help="Config whose status files to read (default: ./config.json or config.yaml).")
    parser.add_argument("--set", action="append", metavar="PATH=VALUE", help="e.g. --set system.status_file=other.json")
    if action == "dashboard":
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1: this machine only).")
        parser.add_argument("--port", type=int, default=8765, help="Port (default 8765; 0 picks a free one).")
    else:
        parser.add_argument("--once", action="store_true", help="Print one snapshot and exit.")
    return parser


def run_view(action: str, argv: Sequence[str]) -> int:
    """The ``dashboard`` and ``watch`` actions: they read status files and never train."""
    args = build_view_parser(action).parse_args(argv)
    loader = ConfigLoader(default_config_path(args.config))
    config = loader.merge_with_cli_args({"set": args.set})
    if action == "watch":
        return _watch(config, loader, args)
    from trainer.dashboard.server import serve

    return serve(dashboard_sources(config), args.host, args.port)


ACTIONS = ("dashboard", "watch", "export")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen action and return the process exit code."""
    # bitsandbytes (which peft imports) warns on every CPU with AVX512-BF16 that the optional
    # `kernels` package is missing, a hub download this engine never makes; its 4-bit CPU path
    # falls back by itself. Left on, that line comes before a user error's own first line.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ACTIONS:
        try:
            if argv[0] == "export":
                from trainer.export import main as export

                return export(argv[1:])
            return run_view(argv[0], argv[1:])
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.config_reference:
        from trainer.config.reference import config_reference

        print(config_reference(), end="")
        return EXIT_OK
    try:
        config, loader = load_config(args)
        if config.debug.verbose:  # from the config file as much as from -v
            logging.getLogger().setLevel(logging.DEBUG)
        handler = next((h for name, h in MODES.items() if getattr(args, name)), _train)
        return handler(config, loader, args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
