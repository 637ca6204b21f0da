"""One daemon job, in its own process: train through the engine, then evaluate candidate and hero.

``python -m arena.job_runner JOB_DIR --init-model PATH [--config config.json]``

Runs the base config plus the job's overrides, with the job folder as output and status
location, resuming from the job's own newest checkpoint when one exists. Exit codes are the CLI's
(0 done, 2 bad config, 3 bad data, 4 training diverged, 128+N stopped by signal N, 1 a crash). It
dies with the daemon: the kernel sends it SIGTERM when its parent goes, and the engine then saves a
checkpoint and stops.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: the repository root replaces the script's own folder on the path, so
    # sibling modules never shadow top-level packages or the standard library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from arena.jobs import EVALUATION_FILE, EXIT_CODE_FILE, RUN_NAME, STATUS_FILE, load_record  # noqa: E402
from trainer.config import ConfigError, ConfigLoader  # noqa: E402

JOB_LOCK = ".job.lock"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the daemon dies, so no orphan keeps training a job that a
    restarted daemon will resume (elsewhere this is a no-op)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def hold_job_lock(job_dir: Path):
    """An exclusive lock on the job folder for this process's life: a restarted daemon waits on
    it until an old runner has saved its checkpoint and gone."""
    handle = (job_dir / JOB_LOCK).open("w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def main(argv: Sequence[str] | None = None) -> int:
    from core.distributed import is_main_process, world_size

    parser = argparse.ArgumentParser(prog="arena.job_runner")
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--init-model", required=True, help="Model to continue training from.")
    parser.add_argument("--config", help="Base config file.")
    parser.add_argument("--parent-pid", type=int, help="The daemon's pid: exit if it is already gone.")
    args = parser.parse_args(argv)
    code = run(args)
    if world_size() > 1 and is_main_process():  # what the daemon reads instead of torchrun's code
        part = args.job_dir / (EXIT_CODE_FILE + ".part")
        part.write_text(str(code))
        os.replace(part, args.job_dir / EXIT_CODE_FILE)
    elif world_size() > 1 and code != 0:
        # torchrun stops every rank as soon as one fails: a rank that fails first (a config error
        # is found by all of them at once) lets rank 0 write the job's exit code before it goes
        wait_for_file(args.job_dir / EXIT_CODE_FILE, RANK0_GRACE_S)
    return code


RANK0_GRACE_S = 30.0


def wait_for_file(path: Path, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run(args: argparse.Namespace) -> int:
    die_with_parent()  # with several processes, the parent is torchrun's agent, which the daemon runs
    if args.parent_pid is not None and not _alive(args.parent_pid):
        print("error: the daemon that started this job is gone", file=sys.stderr)
        return 128 + signal.SIGTERM  # counted as a stop, not a failure: the next daemon resumes it
    from core.distributed import is_main_process

    # rank 0 holds the lock for the job (an exclusive lock: a second rank would wait forever)
    lock = hold_job_lock(args.job_dir) if is_main_process() else None  # noqa: F841  (held until exit)

    from trainer.core.runner import EXIT_CONFIG, EXIT_OK, execute

    record = load_record(args.job_dir)
    if record is None or record.dataset is None:
        print(f"error: {args.job_dir} has no usable job record", file=sys.stderr)
        return EXIT_CONFIG
    values = {
        **record.overrides,
        "data.dataset_path": [record.dataset],
        "model.path": args.init_model,
        "output.output_dir": str(args.job_dir),
        "output.run_name": RUN_NAME,
        "output.resume": "auto",
        "system.status_file": str(args.job_dir / STATUS_FILE),
    }
    loader = ConfigLoader(args.config)
    try:
        config = loader.apply(values, source=f"job {record.id}")
        if config.model.lora is not None and not config.model.lora.merge:
            # A hero must stand alone: an adapter folder names its base by path, and the job's
            # folder (its stages' models) moves to done/ when the job ends.
            config = loader.apply({**values, "model.lora.merge": True}, source=f"job {record.id} (a hero stands alone)")
        from trainer.core.engine import TrainerEngine
        from trainer.monitoring import TrainingStatusWriter

        writer = TrainingStatusWriter(config.resolve_path(config.system.status_file), enabled=is_main_process())
        code, result = execute(config, loader.sources, TrainerEngine(writer))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if code != EXIT_OK or result is None or not is_main_process():
        return code  # the evaluation is rank 0's
    # the promotion's judge and rate are the daemon's (its config without the job's overrides):
    # a job cannot judge itself
    return evaluate_job(args.job_dir, config, result, writer, daemon=ConfigLoader(args.config).apply({}, source="daemon"))


def evaluate_job(job_dir: Path, config, result, writer, daemon=None) -> int:
    """Evaluate the candidate and the model it started from on the job's held-out rows; with
    the daemon's ``daemon.min_win_rate`` (``daemon``: its config; default the job's), its judge
    measures the candidate's win rate over the hero."""
    from arena.evaluate import evaluate_answers
    from trainer.judges import build_judge, win_rate
    from trainer.models.loading import model_folder, pick_device
    from trainer.profiles import get_profile

    writer.set_phase("evaluating")
    writer.start_heartbeat()  # the engine's stopped with the job; a silent file would read as stale
    try:
        profile = get_profile(config.profile.name, config.profile.options)
        candidate, answers = evaluate_answers(result.model_path, result.probes, profile, config)
        hero, hero_answers = evaluate_answers(model_folder(config), result.probes, profile, config)
        daemon = daemon if daemon is not None else config
        if daemon.daemon.min_win_rate is not None and answers:
            judge = build_judge(daemon.inference.judge, profile, pick_device(daemon.system.device))
            candidate.win_rate = win_rate(judge, result.probes, answers, hero_answers).rate
    finally:
        writer.stop_heartbeat()
    report = {
        "candidate": candidate.model_dump(),
        "hero": hero.model_dump(),
        "model_path": str(result.model_path),
        "final_metrics": result.final_metrics,
    }
    (job_dir / EVALUATION_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    writer.set_phase("completed")
    print(f"evaluation: candidate {candidate.model_dump()} vs start model {hero.model_dump()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
