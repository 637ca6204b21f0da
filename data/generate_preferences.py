"""Generate the bundled preference pairs: arithmetic word problems with a better and a worse answer.

Each row is TRL's standard explicit-prompt form plus the kind of defect of the rejected answer:
``{"prompt": question, "chosen": answer, "rejected": worse answer, "rejected_kind": kind}``.

- The problems are ``generate_arithmetic.py``'s, drawn with their own seed.
- ``chosen`` is the problem's right answer in GSM8K form (reasoning lines with ``<<calc>>``
  annotations, then ``#### <final>``), the neutral form every profile renders in its own format.
- ``rejected`` is written in one profile's answer format (``--profile``, default ``regime3``, the
  default config's) with one defect, because the engine keeps a rejected answer verbatim (see
  ``trainer/data/shapes/render.py``): a defect shown in the format the model is trained to
  answer in is the contrast worth learning. Kinds (``REJECTED_KINDS``, with their shares):
  ``arithmetic_slip`` (a step's result is wrong and the error carries to the end),
  ``wrong_final`` (the steps are right, the final answer is not), ``no_final_answer`` (the
  answer's last part is missing), ``truncated`` (cut off part way), ``prose`` (the right
  reasoning and answer as a paragraph, not in the format), ``bare_answer`` (the right number
  alone). Every rejected answer fails the profile's own check, in format or in answer.

The output is byte-for-byte reproducible: only ``random.Random`` seeded from ``--seed`` drives the
choices. Used with another profile than the one the rejected answers were written for, the pairs
still prefer the better answer, but also contrast two formats.

Usage: python data/generate_preferences.py [--pairs N] [--seed S] [--profile NAME] [--out PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
REPO = DATA_DIR.parent
if str(REPO) not in sys.path:  # run as a script, data/ is on the path and the package is not
    sys.path.insert(0, str(REPO))

from trainer.data.example import Example
from trainer.data.formats import convert_question_answer
from trainer.profiles import DataProfile, get_profile

DEFAULT_PAIRS = 2000
DEFAULT_SEED = 4321  # not generate_arithmetic's 1234, so the problems are mostly new ones
DEFAULT_PROFILE = "regime3"
DEFAULT_OUT = DATA_DIR / "preferences_train.jsonl"

# A worked step after annotations are stripped: "27 + 8 = 35".
_EQUATION = re.compile(r"(\d+) ([+*-]) (\d+) = (\d+)")
_APPLY: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
}  # fmt: skip
SLIPS = (1, 2, 3, 10)  # how far off a slipped step is, in either direction


def load_arithmetic():
    """data/ is not a package, so import the arithmetic generator from its path."""
    if "generate_arithmetic" in sys.modules:
        return sys.modules["generate_arithmetic"]
    spec = importlib.util.spec_from_file_location("generate_arithmetic", DATA_DIR / "generate_arithmetic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _with_answer(right: Example, reasoning: list[str], final: str) -> Example:
    content = "\n".join([*reasoning, f"#### {final}"])
    return Example([right.messages[0], {"role": "assistant", "content": content}], final, reasoning)


def _near(rng: random.Random, value: int) -> int:
    """A wrong value near ``value``, never negative."""
    return value + rng.choice(SLIPS) if value < max(SLIPS) else value + rng.choice(SLIPS) * rng.choice((-1, 1))


def arithmetic_slip(rng: random.Random, right: Example, profile: DataProfile) -> str:
    """One step's result is off, and every later step works on the wrong value."""
    steps = list(right.reasoning or [])
    slipped = rng.randrange(len(steps))
    shift, value = rng.choice(SLIPS), None
    for index in range(slipped, len(steps)):
        match = _EQUATION.search(steps[index])
        left, op, operand = int(match[1]), match[2], int(match[3])
        if value is not None:
            left = value
        # Shifting up keeps every value non-negative: later steps only add, subtract or multiply.
        value = _APPLY[op](left, operand) + (shift if index == slipped else 0)
        steps[index] = steps[index][: match.start()] + f"{left} {op} {operand} = {value}" + steps[index][match.end() :]
    return profile.render_answer(_with_answer(right, steps, str(value)))


def wrong_final(rng: random.Random, right: Example, profile: DataProfile) -> str:
    return profile.render_answer(_with_answer(right, list(right.reasoning or []), str(_near(rng, int(right.final_answer)))))


def no_final_answer(rng: random.Random, right: Example, profile: DataProfile) -> str:
    """The right answer without its last paragraph, which holds the final answer in every profile."""
    return profile.render_answer(right).rpartition("\n\n")[0]


def truncated(rng: random.Random, right: Example, profile: DataProfile) -> str:
    """The right answer cut at a word boundary between 30% and 70% of its length."""
    text = profile.render_answer(right)
    cut = text.rfind(" ", 0, int(len(text) * rng.uniform(0.3, 0.7)))
    return text[: cut if cut > 0 else len(text) // 2].rstrip()


def prose(rng: random.Random, right: Example, profile: DataProfile) -> str:
    return " ".join(right.reasoning or []) + f" So the answer is {right.final_answer}."


def bare_answer(rng: random.Random, right: Example, profile: DataProfile) -> str:
    return str(right.final_answer)


# kind -> (share of rows, builder); wrong answers in the format, and right ones out of it.
REJECTED_KINDS: dict[str, tuple[float, Callable[[random.Random, Example, DataProfile], str]]] = {
    "arithmetic_slip": (0.30, arithmetic_slip),
    "wrong_final": (0.20, wrong_final),
    "no_final_answer": (0.15, no_final_answer),
    "truncated": (0.15, truncated),
    "prose": (0.10, prose),
    "bare_answer": (0.10, bare_answer),
}


def make_pair(problem: dict[str, str], kind: str, rng: random.Random, profile: DataProfile) -> dict[str, str]:
    """One row: the problem's right answer as chosen, a ``kind`` defect of it as rejected.

    Raises:
        RuntimeError: the rejected answer passes the profile's check (a bug in a kind's builder).
    """
    right = convert_question_answer(problem)
    rejected = REJECTED_KINDS[kind][1](rng, right, profile)
    verdict = profile.check_answer(rejected, right.final_answer)
    if verdict.format_ok and verdict.correct:
        raise RuntimeError(f"rejected kind {kind} made a right answer in {profile.full_name}'s format: {rejected!r}")
    return {"prompt": problem["question"], "chosen": problem["answer"], "rejected": rejected, "rejected_kind": kind}


def generate(pairs: int, seed: int, profile_name: str = DEFAULT_PROFILE) -> list[dict[str, str]]:
    """``pairs`` rows on distinct problems, each with a rejected kind drawn by its share."""
    profile = get_profile(profile_name)
    problems = load_arithmetic().generate(pairs, seed)
    rng = random.Random(f"rejected:{seed}")  # a string seed hashes the same in every process
    kinds, shares = list(REJECTED_KINDS), [share for share, _ in REJECTED_KINDS.values()]
    return [make_pair(problem, rng.choices(kinds, shares)[0], rng, profile) for problem in problems]


def write_jsonl(rows: list[dict[str, str]], out: Path) -> None:
    """One JSON object per line, fixed key order and LF endings, for reproducible bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="number of pairs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="profile whose format the rejected answers are in")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl path")
    args = parser.parse_args(argv)
    try:
        rows = generate(args.pairs, args.seed, args.profile)
    except RuntimeError as exc:  # e.g. a profile with no answer format of its own to break
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_jsonl(rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
