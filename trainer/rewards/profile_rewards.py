"""Rewards that judge with the data profile: the same check previews and evaluation use.

``format`` and ``answer`` call the profile's ``check_format`` / ``check_answer``, so "format ok"
means one thing in training, in the status file and in RL. The profile comes from
:class:`~trainer.rewards.base.RewardContext`. A profile's default reward (what an RL method uses
when no ``reward`` is given, and what ``{"type": "profile"}`` stands for) is
:func:`profile_default_spec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.rewards.base import Reward, Row

if TYPE_CHECKING:
    from trainer.profiles.base import DataProfile

# Being right matters most; the format part keeps a signal while the model cannot be right yet
# (the embedded tiny model learns the format long before any arithmetic).
DEFAULT_SPEC: dict[str, Any] = {
    "type": "weighted_sum",
    "components": [{"type": "format", "weight": 0.3}, {"type": "answer", "weight": 0.7}],
}


def profile_default_spec(profile: DataProfile) -> dict[str, Any]:
    """The profile's own reward spec if it has one, else :data:`DEFAULT_SPEC`.

    A profile opts in with an attribute ``default_reward``: a spec dict, or a method returning
    one (no change to the ``DataProfile`` base class is needed; it is read with ``getattr``).
    """
    spec = getattr(profile, "default_reward", None)
    if callable(spec):
        spec = spec()
    return spec if spec is not None else DEFAULT_SPEC


class FormatReward(Reward):
    """1.0 when the completion follows the profile's format (``check_format(...).format_ok``),
    else 0.0. Range 0..1; no reference needed; an empty completion is not in any format (0.0)."""

    name = "format"
    needs_profile = True

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float:
        return 1.0 if self.context.profile.check_format(completion).format_ok else 0.0


class AnswerReward(Reward):
    """1.0 when the completion's final answer, as the profile extracts it, equals the expected
    answer (``check_answer(completion, expected).correct``; numbers compare after normalising,
    so "1,000" matches "1000"), else 0.0. Range 0..1; without a reference: None (does not
    apply).

    The expected answer is the row's ``expected`` column where it has one (the RL prompt data
    writes the row's final answer there; None there: the row states no final answer, so this
    reward does not apply). Otherwise it is the reference, which may be the bare final answer
    ("42") or a whole answer in the profile's format ("Step 1: ...\n\nAnswer: 42"): a
    reference that passes the profile's format check is reduced to the answer it states.
    """

    name = "answer"
    needs_profile = True
    needs_reference = True

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float | None:
        profile = self.context.profile
        if "expected" in row:
            expected = row["expected"]
            if expected is None:
                return None
        else:
            own = profile.check_format(reference)
            expected = own.answer if own.format_ok and own.answer is not None else reference
        return 1.0 if profile.check_answer(completion, str(expected)).correct else 0.0
