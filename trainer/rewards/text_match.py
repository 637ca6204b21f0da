"""Rewards that compare the completion with the reference text, from the standard libraries.

BLEU, chrF and TER come from sacrebleu (sentence-level, the reference implementations), ROUGE-L
from Google's rouge-score, edit distance from rapidfuzz. Every one is rescaled so that 1.0 is
"the same as the reference" and higher is better; each docstring gives the range. All need a
reference: an example without one gets None (does not apply).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from trainer.rewards.base import Requirement, Reward, RewardOptions, Row

SACREBLEU = Requirement("sacrebleu", "sacrebleu")


class ExactMatchOptions(RewardOptions):
    lowercase: bool = Field(True, description="Compare case-insensitively.")
    normalize_whitespace: bool = Field(True, description="Strip the ends and read any whitespace run as one space.")


class ExactMatch(Reward):
    """1.0 if the completion equals the reference, else 0.0 (range 0..1). By default case and
    whitespace runs do not count. Compares whole texts; to compare the final answer a profile
    extracts, use ``answer``."""

    name = "exact_match"
    Options = ExactMatchOptions
    needs_reference = True

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        o = self.options
        a, b = completion, reference
        if o.normalize_whitespace:
            a, b = " ".join(a.split()), " ".join(b.split())
        if o.lowercase:
            a, b = a.casefold(), b.casefold()
        return 1.0 if a == b else 0.0


class WordOptions(RewardOptions):
    lowercase: bool = Field(True, description="Compare case-insensitively.")


_WORD = re.compile(r"\w+")


class Jaccard(Reward):
    """Jaccard coefficient of the two texts' word sets: |A & B| / |A | B| (range 0..1; words are
    runs of letters / digits, punctuation ignored). Two texts without words: 1.0; one without:
    0.0. Set arithmetic on words is the whole metric; no library adds anything to it."""

    name = "jaccard"
    Options = WordOptions
    needs_reference = True

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        a, b = self._words(completion), self._words(reference)
        if not a and not b:
            return 1.0
        return len(a & b) / len(a | b)

    def _words(self, text: str) -> set[str]:
        return {w.casefold() if self.options.lowercase else w for w in _WORD.findall(text)}


class LevenshteinOptions(RewardOptions):
    unit: Literal["chars", "words"] = Field("chars", description="Edit characters, or whole (whitespace-separated) words.")
    lowercase: bool = Field(False, description="Compare case-insensitively.")


class Levenshtein(Reward):
    """Normalised Levenshtein similarity (rapidfuzz): ``1 - edits / max(len(a), len(b))``,
    range 0..1 (1.0: identical, two empty texts included; 0.0: nothing in common)."""

    name = "levenshtein"
    Options = LevenshteinOptions
    needs_reference = True
    requires = (Requirement("rapidfuzz", "rapidfuzz"),)

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        from rapidfuzz.distance import Levenshtein as edit

        a, b = (completion.casefold(), reference.casefold()) if self.options.lowercase else (completion, reference)
        if self.options.unit == "words":
            a, b = a.split(), b.split()
        return float(edit.normalized_similarity(a, b))


class BleuOptions(RewardOptions):
    smooth_method: Literal["exp", "floor", "add-k", "none"] = Field(
        "exp", description="sacrebleu's smoothing for sentence BLEU (without it a short answer missing any 4-gram scores 0)."
    )
    lowercase: bool = Field(True, description="Case-insensitive (the seed system's default).")
    tokenize: str = Field("13a", description="sacrebleu tokenizer: 13a, intl, char, zh, none, ...")


class SacreBleuReward(Reward):
    """A sentence-level sacrebleu metric, built once on first use (the import is heavy), scored
    against the one reference; subclasses build the metric and map its 0..100 score."""

    needs_reference = True
    requires = (SACREBLEU,)

    def __init__(self, options: Any, context: Any):
        super().__init__(options, context)
        self._metric = None

    def build_metric(self) -> Any:
        raise NotImplementedError

    def from_score(self, score: float) -> float:
        return score / 100.0

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        if self._metric is None:
            self._metric = self.build_metric()
        return self.from_score(self._metric.sentence_score(completion, [reference]).score)


class Bleu(SacreBleuReward):
    """Sentence BLEU (sacrebleu, effective n-gram order) divided by 100: range 0..1, 1.0 for a
    completion equal to the reference; an empty completion scores 0.0."""

    name = "bleu"
    Options = BleuOptions

    def build_metric(self) -> Any:
        from sacrebleu.metrics import BLEU

        o = self.options
        return BLEU(smooth_method=o.smooth_method, lowercase=o.lowercase, tokenize=o.tokenize, effective_order=True)


class ChrfOptions(RewardOptions):
    char_order: int = Field(6, ge=1, description="Longest character n-gram.")
    word_order: int = Field(0, ge=0, description="Longest word n-gram; 2 is chrF++.")
    beta: float = Field(2.0, gt=0, description="Recall's weight against precision.")
    lowercase: bool = Field(False, description="Case-insensitive.")


class Chrf(SacreBleuReward):
    """Sentence chrF (chrF++ with ``word_order: 2``; sacrebleu) divided by 100: range 0..1,
    1.0 for a completion equal to the reference; an empty completion scores 0.0."""

    name = "chrf"
    Options = ChrfOptions

    def build_metric(self) -> Any:
        from sacrebleu.metrics import CHRF

        o = self.options
        return CHRF(char_order=o.char_order, word_order=o.word_order, beta=o.beta, lowercase=o.lowercase)


class TerOptions(RewardOptions):
    case_sensitive: bool = Field(False, description="Count a change of case as an edit.")
    normalized: bool = Field(False, description="sacrebleu's TER normalisation of punctuation and numbers.")


class Ter(SacreBleuReward):
    """Translation edit rate as a reward: ``max(0, 1 - TER)``, where TER (sacrebleu) is the
    edits needed to turn the completion into the reference per reference word. Higher is
    better: 1.0 needs no edit, 0.0 needs as many edits as the reference has words or more (TER
    itself is unbounded above); an empty completion scores 0.0."""

    name = "ter"
    Options = TerOptions

    def build_metric(self) -> Any:
        from sacrebleu.metrics import TER

        return TER(case_sensitive=self.options.case_sensitive, normalized=self.options.normalized)

    def from_score(self, score: float) -> float:
        return max(0.0, 1.0 - score / 100.0)


class RougeOptions(RewardOptions):
    measure: Literal["fmeasure", "precision", "recall"] = Field("fmeasure", description="Which ROUGE-L figure.")
    use_stemmer: bool = Field(True, description="Porter-stem words first (the seed system's default).")


class RougeL(Reward):
    """ROUGE-L (longest common subsequence of words; Google's rouge-score), F-measure by default:
    range 0..1. rouge-score lowercases and keeps only ASCII letters and digits, so text in
    other scripts has no words to match (0.0); use ``chrf`` there."""

    name = "rouge_l"
    Options = RougeOptions
    needs_reference = True
    requires = (Requirement("rouge_score", "rouge-score"),)

    def __init__(self, options: Any, context: Any):
        super().__init__(options, context)
        self._scorer = None

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=self.options.use_stemmer)
        return float(getattr(self._scorer.score(reference, completion)["rougeL"], self.options.measure))


TEXT_MATCH_REWARDS = (ExactMatch, Jaccard, Levenshtein, Bleu, Chrf, Ter, RougeL)
