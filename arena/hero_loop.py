#!/usr/bin/env python
"""The training daemon: ``python arena/hero_loop.py --queue DIR [--config config.json]``.

Drop datasets (or ``*.job.json`` files) into ``DIR/inbox`` (or ``inbox/high``, ``inbox/normal``,
``inbox/low``); each is trained in turn, continuing from the current hero model, and the result
becomes the new hero if it is not worse. Control a running daemon with ``--status``, ``--pause``,
``--resume`` and ``--stop``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: the repository root replaces the script's own folder on the path, so
    # sibling modules never shadow top-level packages or the standard library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from arena import control  # noqa: E402
from trainer.config import ConfigError, ConfigLoader  # noqa: E402
from trainer.config.loader import default_config_path  # noqa: E402

EXIT_OK, EXIT_NOT_RUNNING, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hero_loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", required=True, type=Path, help="Queue folder (inbox/, processing/, done/, failed/).")
    parser.add_argument("--config", help="Base job config (default: ./config.json if present).")
    parser.add_argument("--set", action="append", metavar="PATH=VALUE", help="Override a config key, as in the trainer CLI.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="Print the running daemon's status and exit.")
    action.add_argument("--pause", action="store_true", help="Take no new job until --resume (the running one finishes).")
    action.add_argument("--resume", action="store_true", help="Take jobs again after --pause.")
    action.add_argument("--stop", action="store_true", help="Stop the daemon; the running job is checkpointed.")
    return parser


def _status(args: argparse.Namespace) -> int:
    running = control.is_running(args.queue)
    loader = ConfigLoader(default_config_path(args.config))
    config = loader.merge_with_cli_args({"set": args.set})
    path = config.resolve_path(config.daemon.status_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = None
    print(json.dumps({"running": running, "pid": control.read_pid(args.queue) if running else None, "status": data}, indent=2))
    return EXIT_OK if running else EXIT_NOT_RUNNING


def _pause(args: argparse.Namespace) -> int:
    control.set_paused(args.queue, True)
    print(f"paused {args.queue}: no new job starts until --resume")
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    control.set_paused(args.queue, False)
    print(f"resumed {args.queue}")
    return EXIT_OK


def _stop(args: argparse.Namespace) -> int:
    if not control.is_running(args.queue):
        print(f"no daemon is running on {args.queue}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    stopped = control.request_stop(args.queue, timeout=600)
    print("stopped" if stopped else "the daemon did not stop within 600 s")
    return EXIT_OK if stopped else EXIT_NOT_RUNNING


CONTROLS = {"status": _status, "pause": _pause, "resume": _resume, "stop": _stop}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        for name, handler in CONTROLS.items():
            if getattr(args, name):
                return handler(args)
        config_path = default_config_path(args.config)
        config = ConfigLoader(config_path).merge_with_cli_args({"set": args.set})
        from arena.daemon import HeroLoop

        return HeroLoop(args.queue.resolve(), config).run()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except control.QueueBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def run_script() -> int:
    """``main()`` for the command line: a reader that goes away early (``--status | head -1``)
    ends the output quietly, as it does for any Unix tool."""
    try:
        code = main()
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
    except BrokenPipeError:
        # As the Python docs advise (signal module, "Note on SIGPIPE"): point stdout at devnull
        # so the flush at exit does not fail again, and exit as a process killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


if __name__ == "__main__":
    raise SystemExit(run_script())
