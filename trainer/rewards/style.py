"""Rewards on the completion's shape alone: its length, how much it repeats itself, how easy
it reads. No reference, no model; an empty completion's value is stated in each docstring."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from trainer.rewards.base import Requirement, Reward, RewardOptions, Row


def _units(text: str, unit: str) -> list[str]:
    return text.split() if unit == "words" else list(text)


class LengthOptions(RewardOptions):
    unit: Literal["words", "chars"] = Field("words", description="Count whitespace-separated words or characters.")
    target: int | None = Field(None, gt=0, description="The wanted length; the reward falls off linearly either side.")
    tolerance: int = Field(0, ge=0, description="With target: this many units either side still score 1.0.")
    min: int | None = Field(None, ge=0, description="Shortest length that scores 1.0 (instead of target).")
    max: int | None = Field(None, gt=0, description="Longest length that scores 1.0 (instead of target).")

    @model_validator(mode="after")
    def _one_way(self) -> LengthOptions:
        ranged = self.min is not None or self.max is not None
        if self.target is not None and ranged:
            raise ValueError("give target (with tolerance) or a min / max range, not both")
        if self.target is None and not ranged:
            raise ValueError("give a target length, or min and / or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Length(Reward):
    """How close the completion's length n is to what is wanted; range 0..1.

    With ``target``: ``max(0, 1 - max(0, |n - target| - tolerance) / target)``: 1.0 within the
    tolerance, 0.0 at twice the target or at 0 (an empty completion scores tolerance / target).
    With ``min`` / ``max``: 1.0 inside the range; below it ``n / min``; above it
    ``max(0, 1 - (n - max) / max)`` (0.0 at twice the maximum).
    """

    name = "length"
    Options = LengthOptions

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        o = self.options
        n = len(_units(completion, o.unit))
        if o.target is not None:
            off = max(0, abs(n - o.target) - o.tolerance)
            return max(0.0, 1.0 - off / o.target)
        if o.min is not None and n < o.min:
            return n / o.min
        if o.max is not None and n > o.max:
            return max(0.0, 1.0 - (n - o.max) / o.max)
        return 1.0


class RepetitionOptions(RewardOptions):
    n: int = Field(3, ge=1, description="n-gram size.")
    unit: Literal["words", "chars"] = Field("words", description="n-grams of words or of characters.")


class Repetition(Reward):
    """Share of the completion's n-grams that are distinct: ``distinct / total``, range 0..1
    (1.0: nothing repeats; a text looping one phrase tends to 0). A completion with fewer than
    ``n`` units (an empty one included) repeats nothing: 1.0; pair it with ``length`` to stop
    short answers from winning."""

    name = "repetition"
    Options = RepetitionOptions

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        units, n = _units(completion, self.options.unit), self.options.n
        grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
        return len(set(grams)) / len(grams) if grams else 1.0


class ReadabilityOptions(RewardOptions):
    lang: str = Field("en_US", description="pyphen dictionary for syllables (the Flesch constants are English's).")


_SENTENCE_END = re.compile(r"[.!?]+")
_LETTERS = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


class Readability(Reward):
    """Flesch reading ease, clipped to 0..100 and divided by 100: range 0..1, higher reads
    easier (0.6-0.7 is plain English; dense technical prose scores near 0).

    ``206.835 - 1.015 * words / sentences - 84.6 * syllables / words``, syllables counted from
    pyphen's hyphenation points (``len(positions) + 1`` per word). That is textstat's own
    fallback for words outside its pronouncing dictionary; textstat itself is not used because it
    downloads that dictionary (NLTK's cmudict) at run time, which fails offline. A completion
    without words scores 0.0.
    """

    name = "readability"
    Options = ReadabilityOptions
    requires = (Requirement("pyphen", "pyphen"),)

    def __init__(self, options: Any, context: Any):
        super().__init__(options, context)
        self._dictionary = None

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        return min(max(self.reading_ease(completion), 0.0), 100.0) / 100.0 if _LETTERS.search(completion) else 0.0

    def reading_ease(self, text: str) -> float:
        """The unclipped Flesch reading ease of ``text`` (which has at least one word)."""
        if self._dictionary is None:
            import pyphen

            self._dictionary = pyphen.Pyphen(lang=self.options.lang)
        words = _LETTERS.findall(text)
        sentences = max(1, sum(1 for part in _SENTENCE_END.split(text) if _LETTERS.search(part)))
        syllables = sum(len(self._dictionary.positions(w.lower())) + 1 for w in words)
        return 206.835 - 1.015 * len(words) / sentences - 84.6 * syllables / len(words)


STYLE_REWARDS = (Length, Repetition, Readability)
