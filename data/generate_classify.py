"""Generate the bundled classification rows: arithmetic yes / no questions, labeled "yes" or "no".

Each row is ``{"text": ..., "label": "yes" | "no"}``: seed 000's yes / no classifier demo, on text
the embedded tiny model's tokenizer knows (digits, ``+``, ``-``, ``=``, short English words).
Two kinds (``--kind``):

- ``parity`` (the bundled file): "Is 4821 even?" / "Is 4821 odd?". Each number (0..9999) is
  asked about once, so a held-out question is never answered by its twin in training. The
  embedded tiny model learns it in a couple of hundred steps: the answer is in the last digit.
- ``sum``: "17 + 5 = 22", true or false. A false result is off by one of ``SLIPS`` (either way,
  never below 0), so only the arithmetic tells true from false. The tiny model does not learn
  this in a short run (its held-out accuracy stays near chance); a real model is the test of it.

Half the rows say "yes", half "no", in a seeded shuffle, and every text is distinct. The output
is byte-for-byte reproducible: only ``random.Random`` seeded from ``--seed`` drives the choices.

Usage: python data/generate_classify.py [--kind parity|sum] [--rows N] [--seed S] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_ROWS = 2000
DEFAULT_SEED = 2468
DEFAULT_KIND = "parity"
DEFAULT_OUT = DATA_DIR / "classify_train.jsonl"
MAX_NUMBER = 9999  # parity questions
MAX_OPERAND = 49  # sum statements
SLIPS = (1, 2, 3, 10)  # how far off a false sum is, in either direction
MAX_ROWS = 4000  # well under the distinct texts of either kind, so drawing them always ends


def parity_question(rng: random.Random, true: bool) -> tuple[str, int]:
    """An "Is N even?" / "Is N odd?" question whose answer is ``true``, and its number."""
    n = rng.randint(0, MAX_NUMBER)
    word = ("even" if n % 2 == 0 else "odd") if true else ("odd" if n % 2 == 0 else "even")
    return f"Is {n} {word}?", n


def sum_statement(rng: random.Random, true: bool) -> tuple[str, str]:
    """An ``a op b = c`` statement (``+`` or ``-``, never below 0), true or false as asked."""
    while True:
        op = rng.choice("+-")
        a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
        if op == "-" and a < b:
            a, b = b, a
        result = a + b if op == "+" else a - b
        if not true:
            result += rng.choice(SLIPS) * rng.choice((-1, 1))
            if result < 0:
                continue
        text = f"{a} {op} {b} = {result}"
        return text, text


# kind -> (text, the key that must not repeat): a parity question's number, a statement's text.
KINDS: dict[str, Callable[[random.Random, bool], tuple[str, object]]] = {
    "parity": parity_question,
    "sum": sum_statement,
}


def generate(rows: int, seed: int, kind: str = DEFAULT_KIND) -> list[dict[str, str]]:
    """``rows`` distinct texts of ``kind``, half of them answered "yes".

    Raises:
        ValueError: more than ``MAX_ROWS`` rows, or an unknown kind.
    """
    if rows > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows, got {rows}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    draw = KINDS[kind]
    rng = random.Random(seed)
    labels = ["yes"] * (rows - rows // 2) + ["no"] * (rows // 2)
    rng.shuffle(labels)
    seen: set[object] = set()
    out = []
    for label in labels:
        text, key = draw(rng, label == "yes")
        while key in seen:
            text, key = draw(rng, label == "yes")
        seen.add(key)
        out.append({"text": text, "label": label})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(KINDS), default=DEFAULT_KIND, help=f"question kind (default {DEFAULT_KIND})")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"rows to write (default {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl (default: the bundled file)")
    args = parser.parse_args(argv)
    rows = generate(args.rows, args.seed, args.kind)
    with args.out.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} {args.kind} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
