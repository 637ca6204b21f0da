"""Generate the bundled arithmetic word problems in GSM8K shape.

Each row is ``{"question": ..., "answer": ...}`` where the answer holds one reasoning line per step,
each with a GSM8K calculator annotation (``<<5+3=8>>``), and ends with ``#### <final>``. The
problems are templated so the text is varied yet small enough for a tiny model to learn, and every
value stays in 0..99 so numbers are at most two digits.

The output is byte-for-byte reproducible: only ``random.Random(seed)`` drives the choices, and the
tokenizer of the builtin model is trained on this file, so changing it changes that model.

``--difficulty easy`` writes one-step problems instead (a start of 2..9, then one addition or
subtraction of 1..9): a tiny model learns to get some of them right, which the RL benchmark
(``bench/rl_vs_sft.py``) needs; the default, ``standard``, is the bundled file.

Usage: python data/generate_arithmetic.py [--rows N] [--seed S] [--difficulty standard|easy] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import operator
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROWS = 4000
DEFAULT_SEED = 1234
DEFAULT_OUT = Path(__file__).resolve().parent / "arithmetic_train.jsonl"

# Every intermediate and final value stays below this, so results are one or two digits.
MAX_VALUE = 99
MAX_ADDEND = 20
MAX_FACTOR = 5
# Share of problems that open with "a containers of b objects" (a first multiplication step).
MUL_START_SHARE = 0.3

# (name, subject pronoun, object/possessive pronoun)
PEOPLE = [
    ("Tom", "he", "his"), ("Sam", "he", "his"), ("Ben", "he", "his"), ("Leo", "he", "his"),
    ("Max", "he", "his"), ("Omar", "he", "his"), ("Ravi", "he", "his"), ("Hugo", "he", "his"),
    ("Jack", "he", "his"), ("Liam", "he", "his"),
    ("Anna", "she", "her"), ("Mia", "she", "her"), ("Lily", "she", "her"), ("Zoe", "she", "her"),
    ("Emma", "she", "her"), ("Nora", "she", "her"), ("Sara", "she", "her"), ("Ella", "she", "her"),
    ("Maya", "she", "her"), ("Ruth", "she", "her"),
]
OBJECTS = [
    "apples", "marbles", "stickers", "pencils", "cookies", "books", "coins", "shells", "cards",
    "stamps", "balloons", "crayons", "oranges", "toy cars", "beads",
]
CONTAINERS = ["bags", "boxes", "packs", "jars", "baskets"]
# Who takes part in "give" templates; never the subject, so names are not ambiguous.
OTHERS = ["a friend", "a neighbor", "a cousin", "a classmate", "the teacher"]

# Each template is (question sentence, reasoning clause). The reasoning clause is followed by the
# worked calculation. {S} is the subject as it opens a sentence: the name on the first reasoning
# line, the capitalized pronoun afterwards.
STARTS = [
    "{name} has {a} {obj}.",
    "{name} starts with {a} {obj}.",
    "{name} collects {a} {obj}.",
    "{name} keeps {a} {obj} in {pos} room.",
]
ADD_STEPS = [
    ("Then {he} buys {b} more.", "{S} buys {b} more, so {he} has"),
    ("{Other} gives {obj_pron} {b} more {obj}.", "{S} gets {b} more from {other}, so {he} has"),
    ("Later {he} finds {b} more {obj}.", "{S} finds {b} more, so {he} has"),
    ("{He} wins {b} more {obj} in a game.", "{S} wins {b} more, so {he} has"),
]
SUB_STEPS = [
    ("{He} gives {b} {obj} to {other}.", "{S} gives away {b}, so {he} has"),
    ("Then {he} loses {b} of them.", "{S} loses {b}, so {he} has"),
    ("{He} sells {b} {obj} at the market.", "{S} sells {b}, so {he} has"),
    ("{He} uses {b} of them for a school project.", "{S} uses {b}, so {he} has"),
]
MUL_STEPS = [
    ("Then {he} ends up with {b} times as many {obj} as before.",
     "{S} has {b} times as many as before, so {he} has"),
    ("{Other} helps until {he} has {b} times as many {obj}.",
     "{S} now has {b} times as many, so {he} has"),
    ("{He} trades every one of them for {b} new {obj}.",
     "{S} gets {b} for each one, so {he} has"),
]
# A multiplication that opens the problem: a containers of b objects each.
MUL_STARTS = [
    ("{name} buys {a} {box} with {b} {obj} in each.", "{S} buys {a} {box} of {b}, so {he} has"),
    ("{name} has {a} {box}, and each holds {b} {obj}.",
     "{S} has {a} {box} of {b}, so {he} has"),
]
QUESTIONS = [
    "How many {obj} does {name} have now?",
    "How many {obj} does {name} have at the end?",
    "How many {obj} does {name} have in total?",
]


APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@dataclass(frozen=True)
class Step:
    """One worked operation: ``left op right = result``, phrased by a template pair."""

    question: str
    reasoning: str
    left: int
    op: str
    right: int

    @property
    def result(self) -> int:
        return APPLY[self.op](self.left, self.right)


@dataclass(frozen=True)
class Operation:
    """Templates of one operation and the operands it may take after a given value."""

    templates: list[tuple[str, str]]
    lowest: int
    highest: Callable[[int], int]  # largest operand that keeps the result in 0..MAX_VALUE


@dataclass(frozen=True)
class Difficulty:
    """How hard the problems are: steps per problem, the operations and the size of the numbers."""

    steps: tuple[int, int]  # fewest and most worked steps
    ops: tuple[str, ...]
    start: tuple[int, int]  # the plain starting amount's range
    max_addend: int
    mul_start_share: float


DIFFICULTIES = {
    "standard": Difficulty((2, 3), ("+", "-", "*"), (2, 30), MAX_ADDEND, MUL_START_SHARE),
    "easy": Difficulty((1, 1), ("+", "-"), (2, 9), 9, 0.0),
}

OPERATIONS = {
    "+": Operation(ADD_STEPS, 1, lambda value: min(MAX_ADDEND, MAX_VALUE - value)),
    "-": Operation(SUB_STEPS, 1, lambda value: value),
    # Factor at least 2 so the step changes something; nothing to multiply when value is 0.
    "*": Operation(MUL_STEPS, 2, lambda value: min(MAX_FACTOR, MAX_VALUE // value) if value else 0),
}


def choose_step(rng: random.Random, value: int, level: Difficulty = DIFFICULTIES["standard"]) -> Step:
    """Pick an operation that can follow ``value``, its operand and its templates."""
    def highest(op: str) -> int:
        top = OPERATIONS[op].highest(value)
        return min(top, level.max_addend) if op == "+" else top

    feasible = [op for op in OPERATIONS if op in level.ops and highest(op) >= OPERATIONS[op].lowest]
    op = rng.choice(feasible)
    spec = OPERATIONS[op]
    question, reasoning = rng.choice(spec.templates)
    return Step(question, reasoning, value, op, rng.randint(spec.lowest, highest(op)))


def choose_fields(rng: random.Random) -> dict[str, str]:
    """The person, object and helper a problem talks about, as template fields."""
    name, he, pos = rng.choice(PEOPLE)
    other = rng.choice(OTHERS)
    return {
        "name": name, "he": he, "He": he.capitalize(), "pos": pos,
        "obj_pron": "him" if he == "he" else "her", "obj": rng.choice(OBJECTS),
        "box": rng.choice(CONTAINERS), "other": other, "Other": other[0].upper() + other[1:],
    }


@dataclass(frozen=True)
class Opening:
    """How a problem starts: its first question sentence and what the answer owes to it."""

    question: str
    steps: list[Step]  # a multiplication opening is already a worked step
    value: int  # the amount the next step works on
    preamble: str  # text that opens the first reasoning line


def open_problem(rng: random.Random, fields: dict[str, str], level: Difficulty = DIFFICULTIES["standard"]) -> Opening:
    """Open a problem with a plain starting amount or with a first multiplication step."""
    if rng.random() < level.mul_start_share:
        question, reasoning = rng.choice(MUL_STARTS)
        step = Step(question, reasoning, rng.randint(2, 9), "*", rng.randint(2, 9))
        return Opening(question.format(a=step.left, b=step.right, **fields), [step], step.result, "")
    start = rng.randint(*level.start)
    # State the starting amount so every number the answer uses is written down in it.
    preamble = f"{fields['name']} starts with {start} {fields['obj']}. "
    return Opening(rng.choice(STARTS).format(a=start, **fields), [], start, preamble)


def worked_line(step: Step, fields: dict[str, str]) -> str:
    """One GSM8K-style reasoning line with its calculator annotation."""
    expr = f"{step.left}{step.op}{step.right}"
    clause = step.reasoning.format(b=step.right, a=step.left, **fields)
    return (f"{clause} {step.left} {step.op} {step.right} = <<{expr}={step.result}>>"
            f"{step.result} {fields['obj']}.")


def make_problem(rng: random.Random, level: Difficulty = DIFFICULTIES["standard"]) -> dict[str, str]:
    """One question/answer row with the level's number of worked steps (standard: 2-3)."""
    fields = choose_fields(rng)
    opening = open_problem(rng, fields, level)
    question_parts, steps, value = [opening.question], list(opening.steps), opening.value
    n_steps = rng.randint(*level.steps)
    while len(steps) < n_steps:
        step = choose_step(rng, value, level)
        steps.append(step)
        question_parts.append(step.question.format(b=step.right, **fields))
        value = step.result
    question_parts.append(rng.choice(QUESTIONS).format(**fields))
    # The name opens the answer unless the preamble already introduced the person.
    first_subject = fields["He"] if opening.preamble else fields["name"]
    lines = [worked_line(step, {**fields, "S": first_subject if i == 0 else fields["He"]})
             for i, step in enumerate(steps)]
    lines[0] = opening.preamble + lines[0]
    return {"question": " ".join(question_parts), "answer": "\n".join(lines + [f"#### {value}"])}


def generate(rows: int, seed: int, difficulty: str = "standard") -> list[dict[str, str]]:
    """``rows`` distinct problems; duplicates are skipped so no row is over-weighted."""
    rng = random.Random(seed)
    level = DIFFICULTIES[difficulty]
    seen: set[str] = set()
    problems: list[dict[str, str]] = []
    while len(problems) < rows:
        problem = make_problem(rng, level)
        if problem["question"] not in seen:
            seen.add(problem["question"])
            problems.append(problem)
    return problems


def write_jsonl(problems: list[dict[str, str]], out: Path) -> None:
    """Write one JSON object per line, with fixed key order and LF endings for reproducibility."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as handle:
        for problem in problems:
            handle.write(json.dumps(problem, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="number of problems")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--difficulty", choices=sorted(DIFFICULTIES), default="standard", help="problem difficulty")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl path")
    args = parser.parse_args(argv)
    write_jsonl(generate(args.rows, args.seed, args.difficulty), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
