"""Sentiment by VADER: a lexicon and rules, no model, nothing to download."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.rewards.base import Requirement, Reward, RewardOptions, Row


class SentimentOptions(RewardOptions):
    target: Literal["positive", "negative"] = Field("positive", description="Which sentiment is rewarded.")


class Sentiment(Reward):
    """VADER's compound score c (-1 most negative .. +1 most positive) mapped to 0..1:
    ``(1 + c) / 2`` for ``target: positive``, ``(1 - c) / 2`` for ``negative``. Neutral text,
    an empty completion included, scores 0.5. No reference. VADER is tuned for short English
    social-media text; for anything else, train a classifier and use ``classifier``."""

    name = "sentiment"
    Options = SentimentOptions
    requires = (Requirement("vaderSentiment", "vaderSentiment"),)

    def __init__(self, options: Any, context: Any):
        super().__init__(options, context)
        self._analyzer = None

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        if self._analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._analyzer = SentimentIntensityAnalyzer()
        compound = self._analyzer.polarity_scores(completion)["compound"]
        return (1 + compound) / 2 if self.options.target == "positive" else (1 - compound) / 2
