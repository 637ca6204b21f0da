"""The reward factory: every reward on known inputs, composition and post-processing arithmetic,
validation (a raise / pass pair per rule), the python: escape hatch, the TRL adapter, and that
validating a spec imports no heavy library. Model rewards run on the embedded tiny model and on
randomly initialised tiny classifiers saved from its config (what is tested there is loading,
batching, label choice and ranges, not what the weights say)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trainer.profiles import get_profile
from trainer.rewards import (
    DEFAULT_SPEC,
    REWARDS,
    Reward,
    RewardContext,
    RewardError,
    RewardSpecError,
    UnknownRewardError,
    WeightedSum,
    build_reward,
    register_reward,
    reward_class,
    reward_problems,
    trl_reward_func,
    trl_reward_funcs,
)
from trainer.rewards import spec as spec_module

REPO = Path(__file__).resolve().parent.parent

USER_MODULE = """
def value(prompt, completion, reference, row, offset=0.0):
    return row["value"] + offset

def echo_args(prompt, completion, reference, row):
    return float(len(prompt) * 100 + len(completion) * 10 + (reference is not None))

def not_a_number(prompt, completion, reference, row):
    return "high"

def not_finite(prompt, completion, reference, row):
    return float("nan")

def only_with_reference(prompt, completion, reference, row):
    return None if reference is None else 1.0

NOT_CALLABLE = 3
"""


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    """``hero_user_rewards`` (a user's own reward functions) and ``hero_broken_rewards`` (a
    module that fails on import), importable for this module's tests."""
    root = tmp_path_factory.mktemp("user_rewards")
    (root / "hero_user_rewards.py").write_text(USER_MODULE)
    (root / "hero_broken_rewards.py").write_text("raise RuntimeError('boom')\n")
    sys.path.insert(0, str(root))
    yield "hero_user_rewards"
    sys.path.remove(str(root))
    sys.modules.pop("hero_user_rewards", None)


@pytest.fixture
def ctx():
    return RewardContext(profile=get_profile("regime3"))


def one(spec, completion, reference=None, prompt="Q", row=None, context=None):
    """The reward of one example."""
    node = build_reward(spec, context or RewardContext(profile=get_profile("regime3")))
    return node.score([prompt], [completion], [reference], [row or {}])[0]


def values_spec(*weights, **sum_options):
    """A weighted sum of python:value components reading row["value"] + offset i."""
    return {
        "type": "weighted_sum",
        **sum_options,
        "components": [
            {"type": "python:hero_user_rewards:value", "weight": w, "name": f"v{i}", "options": {"offset": float(i)}}
            for i, w in enumerate(weights)
        ],
    }


def rows_of(*values):
    return {"prompts": ["Q"] * len(values), "completions": ["c"] * len(values), "rows": [{"value": v} for v in values]}


# --- profile rewards --------------------------------------------------------------------------

GOOD = "Step 1: 2 + 2 = 4\n\nAnswer: 4"


def test_format_reward_is_the_profiles_check():
    assert one({"type": "format"}, GOOD) == 1.0
    assert one({"type": "format"}, "It is 4.") == 0.0
    assert one({"type": "format"}, "") == 0.0


def test_answer_reward_compares_the_extracted_answer():
    assert one({"type": "answer"}, GOOD, "4") == 1.0
    assert one({"type": "answer"}, GOOD, "5") == 0.0
    assert one({"type": "answer"}, "Step 1: x\n\nAnswer: 1,000", "1000") == 1.0
    # a whole answer in the profile's format as the reference: its final answer counts
    assert one({"type": "answer"}, GOOD, "Step 1: two and two\n\nAnswer: 4") == 1.0
    assert one({"type": "answer"}, GOOD, None) is None
    assert one({"type": "answer"}, "", "4") == 0.0


def test_answer_reward_prefers_the_rows_expected_answer():
    assert one({"type": "answer"}, GOOD, GOOD.replace("4", "5"), row={"expected": "4"}) == 1.0
    assert one({"type": "answer"}, GOOD, GOOD, row={"expected": "5"}) == 0.0
    assert one({"type": "answer"}, GOOD, GOOD, row={"expected": None}) is None  # the row states no answer


def test_profile_default_reward_is_format_and_answer(ctx):
    node = build_reward(None, ctx)
    assert isinstance(node, WeightedSum) and node.name == "profile"
    assert [c.name for c in node.components] == ["format", "answer"]
    assert node.weights == pytest.approx([0.3, 0.7])
    assert node.score(["Q", "Q", "Q"], [GOOD, GOOD, "prose"], ["4", None, "4"]) == pytest.approx([1.0, 0.3, 0.0])
    assert build_reward({"type": "profile"}, ctx).score(["Q"], [GOOD], ["5"]) == pytest.approx([0.3])
    assert DEFAULT_SPEC["components"][0]["type"] == "format"


def test_a_profile_can_bring_its_own_default_reward():
    profile = get_profile("plain")
    profile.default_reward = {"type": "exact_match"}
    assert build_reward(None, RewardContext(profile=profile)).score(["Q"], ["Paris"], ["paris"]) == [1.0]
    profile.default_reward = lambda: {"type": "length", "target": 2}
    assert build_reward(None, RewardContext(profile=profile)).score(["Q"], ["two words"]) == [1.0]


# --- text matching ---------------------------------------------------------------------------


def test_exact_match():
    assert one({"type": "exact_match"}, "  Hello   World ", "hello world") == 1.0
    assert one({"type": "exact_match", "lowercase": False}, "Hello world", "hello world") == 0.0
    assert one({"type": "exact_match", "normalize_whitespace": False}, "a  b", "a b") == 0.0
    assert one({"type": "exact_match"}, "", "") == 1.0
    assert one({"type": "exact_match"}, "x", None) is None


def test_jaccard():
    assert one({"type": "jaccard"}, "a b c", "B C d") == pytest.approx(2 / 4)
    assert one({"type": "jaccard", "lowercase": False}, "a b c", "B C d") == 0.0
    assert one({"type": "jaccard"}, "", "") == 1.0
    assert one({"type": "jaccard"}, "", "words") == 0.0


def test_levenshtein():
    assert one({"type": "levenshtein"}, "kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert one({"type": "levenshtein", "unit": "words"}, "the cat sat", "the dog sat") == pytest.approx(2 / 3)
    assert one({"type": "levenshtein"}, "Abc", "abc") == pytest.approx(2 / 3)
    assert one({"type": "levenshtein", "lowercase": True}, "Abc", "abc") == 1.0
    assert one({"type": "levenshtein"}, "", "") == 1.0
    assert one({"type": "levenshtein"}, "", "abc") == 0.0


@pytest.mark.parametrize("kind", ["bleu", "chrf", "ter"])
def test_sacrebleu_rewards_are_one_for_the_reference_and_zero_for_nothing(kind):
    text = "the quick brown fox jumps over the lazy dog"
    assert one({"type": kind}, text, text) == pytest.approx(1.0)
    assert one({"type": kind}, "", text) == 0.0
    partial = one({"type": kind}, "the quick brown fox sleeps", text)
    assert 0.0 < partial < 1.0
    assert one({"type": kind}, text, None) is None


def test_ter_as_a_reward_is_one_minus_the_edit_rate_floored_at_zero():
    assert one({"type": "ter"}, "a b c", "a b d") == pytest.approx(1 - 1 / 3)
    assert one({"type": "ter"}, "one two three four five", "x") == 0.0  # TER 500%: no negative reward


def test_bleu_is_case_insensitive_by_default():
    assert one({"type": "bleu"}, "The Cat Sat On The Mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert one({"type": "bleu", "lowercase": False}, "The Cat Sat On The Mat", "the cat sat on the mat") < 0.5


def test_rouge_l():
    assert one({"type": "rouge_l"}, "the cat sits", "the cat sat") == pytest.approx(2 / 3)
    assert one({"type": "rouge_l"}, "the cat sat", "the cat sat") == 1.0
    assert one({"type": "rouge_l", "measure": "precision"}, "the cat sat there", "the cat sat") == pytest.approx(3 / 4)
    assert one({"type": "rouge_l"}, "", "the cat") == 0.0


# --- style -----------------------------------------------------------------------------------


def test_length_around_a_target():
    spec = {"type": "length", "target": 4}
    assert one(spec, "a b c d") == 1.0
    assert one(spec, "a b c d e f") == pytest.approx(0.5)
    assert one(spec, " ".join("x" * 9)) == 0.0
    assert one(spec, "") == 0.0
    assert one({**spec, "tolerance": 2}, "a b c d e f") == 1.0
    assert one({"type": "length", "target": 10, "unit": "chars"}, "abcde") == pytest.approx(0.5)


def test_length_in_a_range():
    spec = {"type": "length", "min": 4, "max": 8}
    assert one(spec, "a b c d e") == 1.0
    assert one(spec, "a b") == pytest.approx(0.5)
    assert one(spec, " ".join("x" * 12)) == pytest.approx(0.5)
    assert one({"type": "length", "max": 2}, "") == 1.0


def test_repetition_is_the_share_of_distinct_ngrams():
    assert one({"type": "repetition"}, "a b c a b c") == pytest.approx(3 / 4)
    assert one({"type": "repetition", "n": 1}, "go go go go") == pytest.approx(1 / 4)
    assert one({"type": "repetition"}, "a b") == 1.0
    assert one({"type": "repetition"}, "") == 1.0
    assert one({"type": "repetition", "unit": "chars", "n": 2}, "abab") == pytest.approx(2 / 3)


def test_readability_is_flesch_reading_ease_over_100():
    node = build_reward({"type": "readability"}, RewardContext())
    reward = node.reward
    # 4 words, 1 sentence, 1 + 4 + 1 + 1 syllables (pyphen: com-pre-hen-sive)
    assert reward.reading_ease("The comprehensive dog sat.") == pytest.approx(206.835 - 1.015 * 4 - 84.6 * 7 / 4)
    assert node.score(["Q"], ["The comprehensive dog sat."]) == pytest.approx([0.54725])
    assert node.score(["Q"], ["The cat sat on the mat."]) == [1.0]  # 116: clipped
    assert node.score(["Q"], ["Institutional considerations."]) == [0.0]  # far below 0: clipped
    assert node.score(["Q", "Q"], ["", "42 !"]) == [0.0, 0.0]


def test_sentiment_by_vader():
    positive = one({"type": "sentiment"}, "I love this, it is wonderful!")
    negative = one({"type": "sentiment"}, "This is terrible and I hate it.")
    assert 0.5 < positive <= 1.0 and 0.0 <= negative < 0.5
    assert one({"type": "sentiment"}, "") == 0.5
    flipped = one({"type": "sentiment", "target": "negative"}, "I love this, it is wonderful!")
    assert flipped == pytest.approx(1 - positive)


# --- composition -----------------------------------------------------------------------------


def test_weighted_sum_divides_by_the_weight_sum_as_the_seed_did(user_module):
    node = build_reward(values_spec(1.0, 3.0), RewardContext())
    scores = node.score_detailed(**rows_of(0.0, 1.0))
    # v0 = value, v1 = value + 1; weights 1/4 and 3/4
    assert scores.components == {"v0": [0.0, 1.0], "v1": [1.0, 2.0]}
    assert scores.total == pytest.approx([0.75, 1.75])
    assert node.weights == [0.25, 0.75]


def test_weighted_sum_without_normalising_is_the_plain_sum(user_module):
    node = build_reward(values_spec(1.0, 3.0, normalize=False), RewardContext())
    assert node.score(**rows_of(0.0, 1.0)) == pytest.approx([3.0, 7.0])
    assert node.weights == [1.0, 3.0]


def test_a_component_that_does_not_apply_adds_nothing(user_module):
    spec = {
        "type": "weighted_sum",
        "normalize": False,
        "components": [
            {"type": "python:hero_user_rewards:value", "weight": 2.0},
            {"type": "exact_match", "weight": 10.0},
        ],
    }
    node = build_reward(spec, RewardContext())
    scores = node.score_detailed(["Q", "Q"], ["a", "a"], ["a", None], [{"value": 1.0}, {"value": 1.0}])
    assert scores.components["exact_match"] == [1.0, None]
    assert scores.total == [12.0, 2.0]
    only_reference = build_reward({"type": "weighted_sum", "components": [{"type": "bleu"}]}, RewardContext())
    assert only_reference.score(["Q"], ["a"], [None]) == [None]


def test_component_names_default_to_their_type_and_are_numbered():
    spec = {"type": "weighted_sum", "components": [{"type": "bleu"}, {"type": "bleu", "lowercase": False}, {"type": "chrf", "name": "chrf_pp"}]}
    node = build_reward(spec, RewardContext())
    assert [c.name for c in node.components] == ["bleu", "bleu_2", "chrf_pp"]


def test_summary_gives_mean_and_std_per_component(user_module):
    scores = build_reward(values_spec(1.0, 1.0), RewardContext()).score_detailed(**rows_of(0.0, 2.0))
    summary = scores.summary()
    assert summary["rewards/v0/mean"] == 1.0
    assert summary["rewards/v0/std"] == pytest.approx(math.sqrt(2))
    assert summary["reward"] == pytest.approx(1.5)
    assert set(summary) == {"reward", "reward_std", "rewards/v0/mean", "rewards/v0/std", "rewards/v1/mean", "rewards/v1/std"}


def test_nested_sums_and_a_single_reward_score_alike(user_module):
    inner = values_spec(1.0, 1.0, normalize=False)
    spec = {"type": "weighted_sum", "normalize": False, "components": [{**inner, "weight": 2.0, "name": "inner"}]}
    assert build_reward(spec, RewardContext()).score(**rows_of(1.0)) == [2.0 * (1.0 + 2.0)]
    single = build_reward({"type": "python:hero_user_rewards:value"}, RewardContext()).score_detailed(**rows_of(5.0))
    assert single.components == {"value": [5.0]} and single.total == [5.0]


# --- post-processing -------------------------------------------------------------------------


def post_node(*post):
    return build_reward({"type": "python:hero_user_rewards:value", "post": list(post)}, RewardContext())


def test_clip_and_scale(user_module):
    assert post_node({"type": "clip"}).score(**rows_of(-1.0, 0.5, 2.0)) == [0.0, 0.5, 1.0]
    assert post_node({"type": "clip", "min": None, "max": 3}).score(**rows_of(-5.0, 5.0)) == [-5.0, 3.0]
    assert post_node({"type": "scale", "factor": 2, "shift": -1}).score(**rows_of(0.0, 3.0)) == [-1.0, 5.0]
    # in order: scale then clip differs from clip then scale
    assert post_node({"type": "scale", "factor": 10}, {"type": "clip"}).score(**rows_of(0.5)) == [1.0]
    assert post_node({"type": "clip"}, {"type": "scale", "factor": 10}).score(**rows_of(0.5)) == [5.0]


def test_the_seed_spellings_are_accepted(user_module):
    node = build_reward(
        {"type": "python:hero_user_rewards:value", "postprocess": [{"type": "scale", "mul": 2, "add": 1}, {"type": "clip", "lo": 0, "hi": 4}]},
        RewardContext(),
    )
    assert node.score(**rows_of(1.0, 5.0)) == [3.0, 4.0]


def test_ema_normalize_tracks_mean_and_variance_across_calls(user_module):
    node = post_node({"type": "ema_normalize", "decay": 0.5, "eps": 1e-12})
    # call 1: mean starts at the batch mean 2; mean = 2; var = .5 * 1 + .5 * mean((x - 2)^2) = 1
    assert node.score(**rows_of(1.0, 3.0)) == pytest.approx([-1.0, 1.0])
    # call 2: mean = .5 * 2 + .5 * 4 = 3; var = .5 * 1 + .5 * 1 = 1
    assert node.score(**rows_of(4.0)) == pytest.approx([1.0])
    # call 3: mean = .5 * 3 + .5 * 6 = 4.5; var = .5 * 1 + .5 * 2.25 = 1.625
    assert node.score(**rows_of(6.0)) == pytest.approx([1.5 / math.sqrt(1.625)])
    assert node.state_dict() == {"post": [{"mean": 4.5, "var": 1.625}]}


def test_ema_state_survives_a_resume(user_module):
    first = post_node({"type": "ema_normalize", "decay": 0.9})
    first.score(**rows_of(1.0, 2.0, 6.0))
    resumed = post_node({"type": "ema_normalize", "decay": 0.9})
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert resumed.score(**rows_of(3.0, 4.0)) == first.score(**rows_of(3.0, 4.0))


def test_ema_of_a_batch_of_one_is_the_seed_update(user_module):
    node = post_node({"type": "ema_normalize", "decay": 0.99, "eps": 1e-8})
    assert node.score(**rows_of(5.0)) == [0.0]  # the seed: first value sets the mean
    m = 0.99 * 5.0 + 0.01 * 7.0
    v = 0.99 * 0.99 + 0.01 * (7.0 - m) ** 2
    assert node.score(**rows_of(7.0)) == pytest.approx([(7.0 - m) / math.sqrt(v + 1e-8)])


def test_post_processors_pass_none_through(user_module):
    spec = {"type": "python:hero_user_rewards:only_with_reference", "post": [{"type": "ema_normalize"}, {"type": "scale", "factor": 3}]}
    node = build_reward(spec, RewardContext())
    assert node.score(["Q", "Q"], ["a", "b"], [None, "r"]) == [None, 0.0]
    assert node.state_dict()["post"][0]["mean"] == 1.0


def test_normalize_standardises_within_the_batch(user_module):
    assert post_node({"type": "normalize", "eps": 1e-12}).score(**rows_of(1.0, 2.0, 3.0)) == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert post_node({"type": "normalize"}).score(**rows_of(4.0, 4.0)) == [0.0, 0.0]


def test_post_on_a_component_comes_before_its_weight_and_post_on_the_sum_after(user_module):
    spec = {
        "type": "weighted_sum",
        "normalize": False,
        "post": [{"type": "clip", "min": 0, "max": 5}],
        "components": [
            {"type": "python:hero_user_rewards:value", "weight": 2.0, "post": [{"type": "clip", "min": 0, "max": 1}]},
            {"type": "python:hero_user_rewards:value", "weight": 1.0, "name": "raw"},
        ],
    }
    scores = build_reward(spec, RewardContext()).score_detailed(**rows_of(3.0, 0.5))
    assert scores.components == {"value": [1.0, 0.5], "raw": [3.0, 0.5]}
    assert scores.total == [5.0, 1.5]  # 2 * 1 + 3 = 5 (clipped from 5, unchanged); 2 * .5 + .5


# --- the python: escape hatch ----------------------------------------------------------------


def test_python_reward_gets_prompt_completion_reference_and_row(user_module):
    node = build_reward({"type": "python:hero_user_rewards:echo_args"}, RewardContext())
    assert node.score(["ab", "abc"], ["x", ""], ["r", None]) == [211.0, 300.0]
    assert node.name == "echo_args"


def test_python_reward_must_return_a_number(user_module):
    with pytest.raises(RewardError, match=r"python:hero_user_rewards:not_a_number \(example 0\) gave 'high'"):
        build_reward({"type": "python:hero_user_rewards:not_a_number"}, RewardContext()).score(["Q"], ["a"])
    with pytest.raises(RewardError, match="must be finite"):
        build_reward({"type": "python:hero_user_rewards:not_finite"}, RewardContext()).score(["Q"], ["a"])


def test_scoring_checks_the_lists_line_up():
    node = build_reward({"type": "length", "target": 3}, RewardContext())
    with pytest.raises(RewardError, match="one of each per example"):
        node.score(["Q"], ["a", "b"])


def test_a_registered_reward_is_usable_by_name():
    class Shouting(Reward):
        """1.0 for all capitals."""

        name = "shouting_test"

        def score_one(self, prompt, completion, reference, row):
            return float(completion.isupper())

    register_reward(Shouting)
    try:
        assert one({"type": "shouting_test"}, "HEY") == 1.0
        assert reward_class("shouting_test") is Shouting
    finally:
        REWARDS.pop("shouting_test")


def test_unknown_reward_class_suggests_a_name():
    with pytest.raises(UnknownRewardError, match="did you mean 'rouge_l'"):
        reward_class("rouge")
    with pytest.raises(UnknownRewardError, match="known rewards: answer, bertscore, bleu"):
        reward_class("zzzzzz")


# --- validation: raise / pass pairs ----------------------------------------------------------


def problems_of(spec, context=None):
    return reward_problems(spec, "method.reward", context)


def component(index, node):
    """A weighted sum whose component ``index`` is ``node`` (the others: bleu)."""
    components = [{"type": "bleu"} for _ in range(index)] + [node]
    return {"type": "weighted_sum", "components": components}


VALID = {
    "type": "weighted_sum",
    "components": [{"type": "format", "weight": 1.0}, {"type": "bleu", "weight": 0.5, "post": [{"type": "clip", "min": 0, "max": 1}]}],
}


def test_the_seed_spec_is_valid(ctx):
    assert problems_of(VALID) == []
    assert problems_of(VALID, ctx) == []
    assert problems_of({"type": "answer"}) == []
    assert problems_of("bleu") == []


@pytest.mark.parametrize(
    ("bad", "good", "message"),
    [
        (component(1, {"type": "blue"}), component(1, {"type": "bleu"}), "method.reward.components[1].type: unknown reward 'blue'; did you mean 'bleu'?"),
        ({"type": "qqqq"}, {"type": "bleu"}, "method.reward.type: unknown reward 'qqqq'; known rewards: answer, "),
        (component(0, {"type": "bleu", "weight": "x"}), component(0, {"type": "bleu", "weight": 2}), "method.reward.components[0].weight: expected a number; got 'x' (str)"),
        (component(0, {"type": "bleu", "weight": True}), component(0, {"type": "bleu", "weight": 0.5}), "method.reward.components[0].weight: expected a number; got True (bool)"),
        ({"type": "bleu", "weight": 1.0}, {"type": "bleu"}, "method.reward.weight: only a component of a weighted_sum has a weight"),
        ({"weight": 1.0}, {"type": "bleu"}, "method.reward.type: required key is missing"),
        ({"type": 3}, {"type": "bleu"}, "method.reward.type: expected a reward name; got 3 (int)"),
        (["bleu"], "bleu", "method.reward: expected a reward such as"),
        ({"type": "bleu", "smooth_methd": "exp"}, {"type": "bleu", "smooth_method": "exp"}, "method.reward.smooth_methd: unknown key; did you mean method.reward.smooth_method?"),
        ({"type": "bleu", "smooth_method": "expo"}, {"type": "bleu", "smooth_method": "floor"}, "method.reward.smooth_method: expected one of 'exp', 'floor', 'add-k' or 'none'; got 'expo' (str); did you mean 'exp'?"),
        ({"type": "repetition", "n": 0}, {"type": "repetition", "n": 2}, "method.reward.n: expected greater than or equal to 1; got 0 (int)"),
        ({"type": "length"}, {"type": "length", "target": 3}, "method.reward: give a target length, or min and / or max"),
        ({"type": "length", "target": 3, "max": 5}, {"type": "length", "min": 3, "max": 5}, "method.reward: give target (with tolerance) or a min / max range, not both"),
        ({"type": "weighted_sum"}, VALID, "method.reward.components: required key is missing"),
        ({"type": "weighted_sum", "components": []}, VALID, "method.reward.components: expected a non-empty list of rewards; got [] (list)"),
        ({"type": "weighted_sum", "components": [{"type": "bleu"}], "normalise": True}, {"type": "weighted_sum", "components": [{"type": "bleu"}], "normalize": False}, "method.reward.normalise: unknown key; did you mean method.reward.normalize?"),
        ({"type": "weighted_sum", "components": [{"type": "bleu", "name": "a"}, {"type": "chrf", "name": "a"}]}, {"type": "weighted_sum", "components": [{"type": "bleu", "name": "a"}, {"type": "chrf", "name": "b"}]}, "method.reward.components[1].name: 'a' already names components[0]"),
        ({"type": "bleu", "name": "a/b"}, {"type": "bleu", "name": "a_b"}, "method.reward.name: expected a label of letters"),
        ({"type": "bleu", "post": {"type": "clip"}}, {"type": "bleu", "post": [{"type": "clip"}]}, "method.reward.post: expected a list of post-processors"),
        ({"type": "bleu", "post": [{"type": "clp"}]}, {"type": "bleu", "post": [{"type": "clip"}]}, "method.reward.post[0].type: unknown post-processor 'clp'; did you mean 'clip'?"),
        ({"type": "bleu", "post": [{"type": "clip", "min": 2, "max": 1}]}, {"type": "bleu", "post": [{"type": "clip", "min": 1, "max": 2}]}, "method.reward.post[0]: min (2.0) is above max (1.0)"),
        ({"type": "bleu", "post": [{"type": "clip", "min": 0, "lo": 0}]}, {"type": "bleu", "post": [{"type": "clip", "lo": 0}]}, "method.reward.post[0]: min and lo are the same option; give one"),
        ({"type": "bleu", "post": [{"type": "ema_normalize", "decay": 1.5}]}, {"type": "bleu", "post": [{"type": "ema_normalize", "decay": 0.5}]}, "method.reward.post[0].decay: expected less than 1; got 1.5 (float)"),
        ({"type": "bleu", "post": [{"type": "scale", "factor": "big"}]}, {"type": "bleu", "post": [{"type": "scale", "factor": 2}]}, "method.reward.post[0].factor: expected a valid number"),
        ({"type": "bleu", "post": [], "postprocess": []}, {"type": "bleu", "postprocess": []}, "method.reward.postprocess: post and postprocess are the same list; give one"),
        ({"type": "profile", "wieght": 1}, {"type": "profile"}, "method.reward.wieght: unknown key; did you mean method.reward.weight?"),
        ({"type": "perplexity"}, None, "method.reward.model_path: required key is missing"),
    ],
)
def test_validation_rule(bad, good, message):
    found = problems_of(bad)
    assert any(p.startswith(message) for p in found), found
    if good is not None:
        assert problems_of(good) == []


def test_a_missing_package_is_named_with_its_install_command(monkeypatch):
    monkeypatch.setattr(spec_module, "package_available", lambda module: module != "sacrebleu")
    spec = component(3, {"type": "bleu"})
    assert "method.reward.components[3].type: bleu needs the package sacrebleu (pip install sacrebleu)" in problems_of(spec)
    assert problems_of({"type": "rouge_l"}) == []


def test_model_folders_are_checked_before_anything_loads(tmp_path, tiny_model_dir):
    missing = tmp_path / "x" / "y"
    spec = component(2, {"type": "perplexity", "model_path": str(missing)})
    assert problems_of(spec) == [f"method.reward.components[2].model_path: {missing} does not exist"]
    (tmp_path / "empty").mkdir()
    assert problems_of({"type": "cosine_sts", "model_path": str(tmp_path / "empty")}) == [
        f"method.reward.model_path: {tmp_path / 'empty'} has no config.json (not a Hugging Face model folder)"
    ]
    (tmp_path / "file").write_text("x")
    assert problems_of({"type": "bertscore", "model_path": str(tmp_path / "file")}) == [f"method.reward.model_path: {tmp_path / 'file'} is not a folder"]
    assert problems_of({"type": "perplexity", "model_path": str(tiny_model_dir)}) == []


def test_profile_rewards_need_a_profile_when_the_context_is_known():
    no_profile = RewardContext(profile=None)
    assert problems_of({"type": "format"}, no_profile) == ["method.reward.type: format judges with the data profile; none was given"]
    assert problems_of({"type": "profile"}, no_profile)[0].startswith("method.reward.type: profile (the profile's default reward) needs the data profile")
    assert problems_of({"type": "format"}) == []  # context unknown: checked when built
    with pytest.raises(RewardSpecError, match="format judges with the data profile"):
        build_reward({"type": "format"}, no_profile)


def test_a_profiles_default_reward_cannot_refer_to_itself():
    profile = get_profile("plain")
    profile.default_reward = {"type": "profile"}
    assert "cannot itself contain 'profile'" in problems_of({"type": "profile"}, RewardContext(profile=profile))[0]


def test_python_reward_validation(user_module):
    assert problems_of({"type": "python:hero_user_rewards:value", "options": {"offset": 1}}) == []
    cases = {
        "python:hero_user_rewards": "expected 'python:package.module:function'",
        "python:no_such_module_xyz:f": "cannot import 'no_such_module_xyz' for reward 'python:no_such_module_xyz:f': ModuleNotFoundError",
        "python:hero_broken_rewards:f": "cannot import 'hero_broken_rewards' for reward 'python:hero_broken_rewards:f': RuntimeError: boom",
        "python:hero_user_rewards:missing": "module 'hero_user_rewards' has no 'missing'",
        "python:hero_user_rewards:NOT_CALLABLE": "'python:hero_user_rewards:NOT_CALLABLE' is not callable",
    }
    for type_name, message in cases.items():
        found = problems_of({"type": type_name})
        assert len(found) == 1 and found[0].startswith(f"method.reward.type: {message}"), found
    assert problems_of({"type": "python:hero_user_rewards:value", "offset": 1}) == ["method.reward.offset: unknown key"]


def test_every_problem_is_reported_at_once(tmp_path):
    spec = {
        "type": "weighted_sum",
        "components": [
            {"type": "bleu", "weight": "x"},
            {"type": "blue"},
            {"type": "perplexity", "model_path": str(tmp_path / "nope")},
            {"type": "length", "post": [{"type": "clp"}]},
        ],
    }
    found = problems_of(spec)
    assert [p.split(":")[0] for p in found] == [
        "method.reward.components[0].weight",
        "method.reward.components[1].type",
        "method.reward.components[2].model_path",
        "method.reward.components[3].post[0].type",
        "method.reward.components[3]",
    ]
    with pytest.raises(RewardSpecError) as raised:
        build_reward(spec, RewardContext())
    assert raised.value.problems == found
    assert str(raised.value).startswith("5 reward problems:")


def test_every_registered_reward_documents_itself_and_forbids_unknown_options():
    for name, cls in REWARDS.items():
        assert cls.__doc__ and cls.name == name
        assert cls.Options.model_config.get("extra") == "forbid", name


HEAVY = ("torch", "transformers", "trl", "datasets", "sacrebleu", "rouge_score", "rapidfuzz", "sentence_transformers", "bert_score", "vaderSentiment", "pyphen")

PROBE = """
import json, sys
import trainer.rewards as rewards
components = [{"type": name, "model_path": "/nonexistent"} if rewards.REWARDS[name].model_option else {"type": name, "target": 3} if name == "length" else {"type": name} for name in rewards.REWARDS]
components.append({"type": "bleu", "smooth_method": "x", "post": [{"type": "clip", "lo": 2, "hi": 1}]})  # option errors too
problems = rewards.reward_problems({"type": "weighted_sum", "components": components})
print(json.dumps({"heavy": sorted(m for m in %r if m in sys.modules), "problems": problems}))
"""


def test_importing_and_validating_imports_no_heavy_library():
    result = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["heavy"] == []
    # each model reward: "/nonexistent does not exist"; then the two option errors
    assert len(out["problems"]) == sum(1 for cls in REWARDS.values() if cls.model_option) + 2, out["problems"]


# --- model rewards on tiny local models ------------------------------------------------------


def save_classifier(tiny_model_dir: Path, folder: Path, **config) -> Path:
    """A randomly initialised tiny ``AutoModelForSequenceClassification`` (with the tiny model's
    tokenizer and chat template) saved in ``folder``."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tiny_model_dir, **config))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tiny_model_dir):
    labels = {0: "neutral", 1: "Toxic", 2: "insult"}
    return save_classifier(tiny_model_dir, tmp_path_factory.mktemp("cls") / "model", num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory, tiny_model_dir):
    return save_classifier(tiny_model_dir, tmp_path_factory.mktemp("rm") / "model", num_labels=1)


CPU = RewardContext(device="cpu", batch_size=2)
TEXTS = ["the cat sat on the mat", "a dog ran far away from home today", "ok, see you then"]


def test_perplexity_reward_and_its_mappings(tiny_model_dir):
    spec = {"type": "perplexity", "model_path": str(tiny_model_dir)}
    node = build_reward(spec, CPU)
    assert node.reward.loaded is None  # nothing loads until the first score
    values = node.score(["Q"] * 4, [*TEXTS, ""])
    assert all(0.0 < v <= 1.0 for v in values[:3]) and values[3] == 0.0
    loaded = node.reward.loaded
    singles = [node.score(["Q"], [t])[0] for t in TEXTS]
    assert singles == pytest.approx(values[:3], rel=1e-5)  # batching and padding change nothing
    assert node.reward.loaded is loaded  # loaded once
    neg_log = build_reward({**spec, "mapping": "neg_log"}, CPU).score(["Q"] * 4, [*TEXTS, ""])
    assert neg_log[:3] == pytest.approx([math.log(v) for v in values[:3]], rel=1e-5)
    assert neg_log[3] == -30.0
    # the tiny tokenizer has no BOS: a one-token completion has no token to score, like an empty one
    assert node.score(["Q"], ["ok"]) == [0.0]
    conditioned = build_reward({**spec, "condition_on_prompt": True}, CPU).score(["Where is the cat?"], [TEXTS[0]])
    assert 0.0 < conditioned[0] <= 1.0 and conditioned[0] != pytest.approx(values[0])


def test_reward_model_scores_the_conversation_as_the_reward_method_documents(reward_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    node = build_reward({"type": "reward_model", "model_path": str(reward_model_dir)}, CPU)
    prompts = ["What is 2 + 2?", "Name a colour.", "Say hi."]
    values = node.score(prompts, TEXTS)
    tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(reward_model_dir).eval()
    for prompt, completion, value in zip(prompts, TEXTS, values):
        conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        with torch.no_grad():
            expected = model(**tokenizer.apply_chat_template(conversation, return_dict=True, return_tensors="pt")).logits[0, 0]
        assert value == pytest.approx(float(expected), abs=1e-5)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompts[0]}]
    with_system = node.score([prompts[0]], [TEXTS[0]], rows=[{"prompt_messages": messages}])
    assert with_system[0] != pytest.approx(values[0])


def test_reward_model_needs_one_output(classifier_dir, reward_model_dir):
    assert problems_of({"type": "reward_model", "model_path": str(reward_model_dir)}) == []
    assert problems_of({"type": "reward_model", "model_path": str(classifier_dir)}) == [
        f"method.reward.model_path: {classifier_dir} has 3 outputs; a reward model has one (train it with method 'reward', or use 'classifier')"
    ]


def test_classifier_label_choice_and_ranges(classifier_dir):
    def scores(**options):
        return build_reward({"type": "classifier", "model_path": str(classifier_dir), **options}, CPU).score(["Q"] * 4, [*TEXTS, " "])

    by_label = {label: scores(label=label) for label in ("neutral", "toxic", "insult")}  # "toxic": any case
    for values in by_label.values():
        assert all(0.0 < v < 1.0 for v in values[:3]) and values[3] == 0.0
    for i in range(3):
        assert sum(values[i] for values in by_label.values()) == pytest.approx(1.0, abs=1e-5)  # softmax
    assert scores(label=2) == pytest.approx(by_label["insult"])
    assert scores(label="insult", invert=True)[:3] == pytest.approx([1 - v for v in by_label["insult"][:3]])
    logits = scores(label="insult", output="logit")
    assert logits[3] is None and all(isinstance(v, float) for v in logits[:3])
    sigmoid = scores(label="insult", activation="sigmoid", output="probability")
    assert sigmoid[:3] == pytest.approx([1 / (1 + math.exp(-v)) for v in logits[:3]], abs=1e-5)


def test_toxicity_is_one_minus_the_toxic_probability(classifier_dir):
    toxicity = build_reward({"type": "toxicity", "model_path": str(classifier_dir)}, CPU).score(["Q"] * 3, TEXTS)
    toxic = build_reward({"type": "classifier", "model_path": str(classifier_dir), "label": "Toxic"}, CPU).score(["Q"] * 3, TEXTS)
    assert toxicity == pytest.approx([1 - v for v in toxic], abs=1e-6)


def test_classifier_labels_are_checked_from_config_json(classifier_dir, reward_model_dir):
    path = str(classifier_dir)
    assert problems_of({"type": "classifier", "model_path": path, "label": "insult"}) == []
    assert problems_of({"type": "classifier", "model_path": path, "label": "rude"}) == [
        f"method.reward.label: 'rude' is not a label of {path} (its labels: neutral, Toxic, insult)"
    ]
    assert problems_of({"type": "classifier", "model_path": path, "label": 3}) == [
        f"method.reward.label: index 3 is out of range; {path} has 3 labels (neutral, Toxic, insult)"
    ]
    assert problems_of({"type": "classifier", "model_path": path}) == [
        f"method.reward.label: {path} has 3 labels (neutral, Toxic, insult); say which one is the reward"
    ]
    assert problems_of({"type": "classifier", "model_path": path, "label": 0, "output": "logit", "invert": True}) == [
        "method.reward.invert: only a probability can be inverted; set output to probability"
    ]
    assert problems_of({"type": "toxicity", "model_path": path}) == []
    assert problems_of({"type": "toxicity", "model_path": str(reward_model_dir)}) == [
        f"method.reward.label: {reward_model_dir} has no label named 'toxic' or 'toxicity' (its labels: LABEL_0); set label"
    ]
    assert problems_of({"type": "classifier", "model_path": str(reward_model_dir)}) == []  # one output: that one


def test_cosine_sts_on_a_local_folder(tiny_model_dir):
    spec = {"type": "cosine_sts", "model_path": str(tiny_model_dir)}
    node = build_reward(spec, CPU)
    values = node.score(["Q"] * 4, [TEXTS[0], TEXTS[1], "", TEXTS[2]], [TEXTS[0], TEXTS[0], TEXTS[0], None])
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= values[1] < 1.0 and values[2] == 0.0 and values[3] is None
    raw = build_reward({**spec, "rescale": False}, CPU).score(["Q"] * 2, TEXTS[:2], [TEXTS[0]] * 2)
    assert raw == pytest.approx([2 * v - 1 for v in values[:2]], abs=1e-5)


def test_bertscore_on_a_local_folder(tiny_model_dir):
    spec = {"type": "bertscore", "model_path": str(tiny_model_dir), "num_layers": 2}
    values = build_reward(spec, CPU).score(["Q"] * 4, [TEXTS[0], TEXTS[1], "", TEXTS[0]], [TEXTS[0], TEXTS[0], TEXTS[0], None])
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= values[1] < 1.0 and values[2] == 0.0 and values[3] is None  # a random model: any cosine
    assert problems_of({**spec, "num_layers": 9}) == [f"method.reward.num_layers: {tiny_model_dir} has 3 layers; got 9"]


# --- the TRL adapter -------------------------------------------------------------------------


def trl_kwargs(n, **columns):
    """What TRL's GRPOTrainer passes besides prompts / completions."""
    return dict(completion_ids=[[1]] * n, trainer_state=object(), log_extra=lambda *a: None, **columns)


def test_trl_reward_funcs_split_a_weighted_sum_into_components(ctx):
    from trl.trainer.utils import get_callable_name

    funcs, weights = trl_reward_funcs(VALID, ctx)
    assert [get_callable_name(f) for f in funcs] == ["format", "bleu"]
    assert weights == pytest.approx([1 / 1.5, 0.5 / 1.5])
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}]] * 2
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "four"}]]
    kwargs = trl_kwargs(2, reference=[GOOD, None], other=[1, 2])
    columns = [f(prompts=prompts, completions=completions, **kwargs) for f in funcs]
    assert columns == [[1.0, 0.0], [pytest.approx(1.0), None]]
    total = sum(w * v for w, v in zip(weights, [c[0] for c in columns]))
    node = build_reward(VALID, ctx)
    assert node.score(["What is 2 + 2?"] * 2, [GOOD, "four"], [GOOD, None]) == pytest.approx([total, weights[0] * 0.0])


def test_trl_rewards_see_the_completion_cut_at_the_profiles_stops(ctx):
    funcs, _ = trl_reward_funcs(VALID, ctx, stops=ctx.profile.get_stop_sequences())
    run_on = GOOD + "\nQuestion: and now 3 + 3?"
    kwargs = trl_kwargs(1, reference=[GOOD])
    assert funcs[0](prompts=["Q"], completions=[run_on], **kwargs) == [1.0]
    assert funcs[1](prompts=["Q"], completions=[run_on], **kwargs) == [pytest.approx(1.0)]
    uncut, _ = trl_reward_funcs(VALID, ctx)
    assert uncut[0](prompts=["Q"], completions=[run_on], **kwargs) == [0.0]


def test_trl_reward_funcs_keep_a_post_processed_total_whole(ctx):
    spec = {**VALID, "post": [{"type": "scale", "factor": 2}]}
    funcs, weights = trl_reward_funcs(spec, ctx)
    assert len(funcs) == 1 and weights == [1.0] and funcs[0].__name__ == "reward"
    assert funcs[0](prompts=["Q"], completions=[GOOD], **trl_kwargs(1, reference=[GOOD])) == pytest.approx([2.0])
    single, w = trl_reward_funcs({"type": "answer"}, ctx)
    assert single[0].__name__ == "answer" and w == [1.0]


def test_trl_reward_func_reads_columns_and_logs_components(user_module):
    logged = []
    func = trl_reward_func(values_spec(1.0, 1.0), RewardContext(reference_column="golden"))
    out = func(
        prompts=["Q", "Q"],
        completions=["a", "b"],
        **trl_kwargs(2, value=[0.0, 2.0], golden=["x", "y"], log_metric=lambda name, value: logged.append((name, value))),
    )
    assert out == pytest.approx([0.5, 2.5])
    assert func.__name__ == "reward"
    assert dict(logged) == pytest.approx({"rewards/v0/mean": 1.0, "rewards/v0/std": math.sqrt(2), "rewards/v1/mean": 2.0, "rewards/v1/std": math.sqrt(2)})


def test_trl_adapter_gives_the_prompt_messages_to_the_row(user_module, tmp_path):
    seen = tmp_path / "seen.json"
    module = tmp_path / "hero_row_probe.py"
    module.write_text(textwrap.dedent(f"""
        import json
        def probe(prompt, completion, reference, row):
            with open({str(seen)!r}, "a") as f:
                f.write(json.dumps([prompt, completion, reference, sorted(row)]) + "\\n")
            return 0.0
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        func = trl_reward_func({"type": "python:hero_row_probe:probe"}, RewardContext())
        func(
            prompts=[[{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]],
            completions=[[{"role": "assistant", "content": "A"}]],
            **trl_kwargs(1, reference=[""], extra=["e"]),
        )
    finally:
        sys.path.remove(str(tmp_path))
    assert json.loads(seen.read_text()) == ["U", "A", None, ["extra", "prompt_messages", "reference"]]
