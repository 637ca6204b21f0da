"""How a PPO update runs: the arithmetic on tensors, and :class:`PPOTrainer`, which runs it
as a transformers ``Trainer`` (one Trainer step = one update). The method, its options and its
collaborators are ``trainer.methods.ppo``; this module is imported when a job builds it.

Shapes: ``(batch, tokens)`` over the completion tokens, with ``mask`` 1.0 on the tokens a
completion really has (up to and including the token that ended it) and 0.0 on the padding
after. The arithmetic follows Ziegler et al. (2019) and the PPO implementation TRL shipped
until it dropped PPO (``trl<0.12``: ``trl/trainer/ppo_trainer.py``, ``core.py``), so figures
read as in the papers and old TRL logs:

- the reward of token t is ``-kl_coef * kl_t``, plus the sequence's score on its last token;
- generalised advantage estimation (Schulman et al. 2016) over those rewards and the values;
- advantages whitened over the batch; clipped policy and value losses;
- the KL coefficient fixed, or adapted towards a target KL (Ziegler et al., section 2.2);
- scores optionally scaled or standardised by running moments, and clipped.

The stateful parts (:class:`AdaptiveKLController`, :class:`RunningMoments`) keep their state as
plain floats with ``state_dict`` / ``load_state_dict``, so a checkpoint holds them exactly and a
resumed run continues bit for bit.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import Trainer

from core import distributed

from trainer.methods.rl import SampleLogging

if TYPE_CHECKING:
    from trainer.core.context import JobContext
    from trainer.methods.ppo import PPOOptions



def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (over everything, or along ``dim``)."""
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Variance of ``values`` where ``mask`` is 1, with Bessel's correction (n / (n - 1))."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    n = mask.sum()
    return var * n / (n - 1) if n > 1 else var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(values - mean) / std`` over the masked entries (eps 1e-8 under the square root).
    Padding comes out as anything: mask it."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    return (values - mean) * torch.rsqrt(var + 1e-8)


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    """The per-token KL estimate of the sampled tokens, policy against reference.

    ``kl``: ``logp - ref_logp`` (unbiased, can be negative per token); ``abs``: its absolute
    value; ``mse``: half its square (both never negative, lower variance, biased).
    """
    diff = logprobs - ref_logprobs
    if kind == "kl":
        return diff
    if kind == "abs":
        return diff.abs()
    if kind == "mse":
        return 0.5 * diff.square()
    raise ValueError(f"unknown KL penalty {kind!r}; expected 'kl', 'abs' or 'mse'")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: ``-kl_coef * kl`` on every token, plus each sequence's score on its
    last real token (where ``mask`` last is 1). Padding gets 0.

    Args:
        scores: ``(batch,)`` one score per completion (after scaling and clipping).
        kl: ``(batch, tokens)`` per-token KL estimates.
        mask: ``(batch, tokens)``; every row has at least one real token.
    """
    rewards = -kl_coef * kl * mask
    last = (mask.cumsum(1) * mask).argmax(1)  # index of the last 1 in each row
    rewards[torch.arange(len(scores)), last] += scores.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation, backwards over the tokens.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``,
    with ``V`` and ``r`` 0 on padding, so the value after a completion's last token is 0 (the
    episode ends there). Returns ``(advantages, returns)`` with ``returns = advantages + values``,
    the value head's regression target. Both are 0 on padding.
    """
    values = values * mask
    rewards = rewards * mask
    length = rewards.shape[1]
    last = torch.zeros_like(rewards[:, 0])
    out = []
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        out.append(last)
    advantages = torch.stack(out[::-1], dim=1) * mask
    return advantages, (advantages + values) * mask


@dataclass
class LossParts:
    """One minibatch's PPO loss and what it measured (figures are detached floats)."""

    loss: torch.Tensor  # policy_loss + vf_coef * value_loss, with its graph
    policy_loss: float
    value_loss: float
    clipfrac: float  # share of tokens whose policy ratio was clipped
    value_clipfrac: float  # share of tokens whose clipped value loss was the larger
    approx_kl: float  # 0.5 * mean((logp - old_logp)^2): how far the policy moved since the rollout


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate: ``mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))``.
    Returns (loss, share of tokens where the clipped term won)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: ``0.5 * mean(max((V - R)^2, (clip(V, V_old +- c) - R)^2))``, so a
    value cannot jump further than ``cliprange_value`` from its rollout estimate in one update.
    Returns (loss, share of tokens where the clipped term won)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)


def ppo_loss(
    logprobs: torch.Tensor,
    values: torch.Tensor,
    old_logprobs: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
    cliprange_value: float,
    vf_coef: float,
) -> LossParts:
    """The whole minibatch loss (see :func:`policy_loss`, :func:`value_loss`)."""
    pg, pg_clip = policy_loss(logprobs, old_logprobs, advantages, mask, cliprange)
    vf, vf_clip = value_loss(values, old_values, returns, mask, cliprange_value)
    approx_kl = 0.5 * masked_mean((logprobs - old_logprobs).detach() ** 2, mask)
    figures = (float(t.detach()) for t in (pg, vf, pg_clip, vf_clip, approx_kl))
    return LossParts(pg + vf_coef * vf, *figures)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the categorical distribution ``softmax(logits)``, in nats."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al.'s proportional controller: after each batch,

        error = clip(current_kl / target - 1, -0.2, 0.2)
        coef <- coef * (1 + error * n_steps / horizon)

    so the coefficient rises while the policy is further from the reference than ``target``
    (nats per completion) and falls while it is closer, by at most 20% of ``n_steps / horizon``
    per batch (``n_steps``: completions in the batch).
    """

    def __init__(self, kl_coef: float, target: float, horizon: int):
        super().__init__(kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current: float, n_steps: int) -> None:
        error = min(max(current / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


class RunningMoments:
    """Running mean and standard deviation of every score seen, merged batch by batch with
    Chan et al.'s parallel update (exact, in any batch sizes); what old TRL's
    ``use_score_scaling`` kept. ``std`` is the sample std over all scores so far."""

    def __init__(self) -> None:
        self.mean = 0.0
        self.var = 1.0  # population variance of everything seen (1.0 before anything is)
        self.std = 1.0
        self.count = 0

    def update(self, xs: list[float]) -> None:
        n = len(xs)
        if n == 0:
            return
        batch_mean = sum(xs) / n
        batch_var = sum((x - batch_mean) ** 2 for x in xs) / n
        total = self.count + n
        delta = batch_mean - self.mean
        old = self.var * self.count if self.count else 0.0
        summed = old + batch_var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var = summed / total
        self.std = math.sqrt(self.var * total / (total - 1)) if total > 1 else 1.0
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "std": self.std, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean, self.var, self.std = float(state["mean"]), float(state["var"]), float(state["std"])
        self.count = int(state["count"])


def process_scores(
    scores: list[float], moments: RunningMoments | None, standardize: bool, clip: float | None
) -> list[float]:
    """Scores as they enter the rewards: with ``moments``, first updated with this batch, then
    divided by their running std (``standardize``: the running mean subtracted first); then
    clipped to ``[-clip, clip]``. Until the scores have spread (std under 1e-8) nothing is
    divided, so a first batch of equal scores does not blow up to 1e8."""
    out = list(scores)
    if moments is not None:
        moments.update(out)
        scale = moments.std if moments.std > 1e-8 else 1.0
        shift = moments.mean if standardize else 0.0
        out = [(s - shift) / scale for s in out]
    if clip is not None:
        out = [min(max(s, -clip), clip) for s in out]
    return out


# --- the trainer ----------------------------------------------------------------------------------


@dataclass
class Rollout:
    """One batch of sampled completions with what the updates need (tensors on the model's
    device; the ``(batch, completion tokens)`` ones are 0 on padding)."""

    input_ids: torch.Tensor  # (batch, prompt + completion tokens): left-padded prompts, then completions
    attention_mask: torch.Tensor
    mask: torch.Tensor  # (batch, completion tokens), float: 1.0 on a completion's own tokens
    logprobs: torch.Tensor  # of the sampled tokens, under the policy that sampled them
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    @property
    def width(self) -> int:
        return self.mask.shape[1]


class PPOTrainer(SampleLogging, Trainer):
    """A transformers ``Trainer`` whose step is one PPO update on one batch of prompts.

    The minibatch gradient steps inside an update are this class's (:meth:`_apply`): each is
    backpropagated, clipped to ``max_grad_norm`` and applied at once, and one with a non-finite
    loss or gradient norm is never applied: it ends the update and makes the step's loss NaN,
    so the divergence guard fails the run (or goes on, under ``guard.on_nonfinite: skip``) as
    for every method. The Trainer's own optimizer step after ``training_step`` then finds no
    gradients and changes nothing; its scheduler step moves the learning rate once per update.
    The guard's loss-spike rule sees an update's loss after its steps were applied.
    """

    def __init__(self, *args: Any, setup: PPOSetup, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ppo = setup
        if setup.reference is not None:
            setup.reference.to(self.args.device)
        self.early_stopped_updates = 0  # updates cut short by target_kl, over the whole run
        self._figures: dict[str, list[float]] = {}  # each update's figures since the last log
        self._update_grad_norm: float | None = None
        self._samples: list[dict[str, Any]] = []  # the latest rollout's completions and rewards

    def latest_samples(self) -> list[dict[str, Any]]:
        return self._samples

    # -- one step: a rollout, then the update ------------------------------------------------------
    def training_step(self, model: Any, inputs: list[dict[str, Any]], num_items_in_batch: Any = None) -> torch.Tensor:
        rollout, figures = self._rollout(model, inputs)
        loss, update_figures = self._update(model, rollout)
        for key, value in {**figures, **update_figures}.items():
            self._figures.setdefault(key, []).append(float(value))
        return torch.tensor(loss, device=self.args.device)

    def _rollout(self, model: Any, rows: list[dict[str, Any]]) -> tuple[Rollout, dict[str, float]]:
        options, ppo = self.ppo.options, self.ppo
        rows = [row for row in rows for _ in range(options.num_generations)]
        input_ids, prompt_mask = self._generate(model, rows)
        width = input_ids.shape[1] - prompt_mask.shape[1]
        generated = input_ids[:, -width:].tolist()
        ends = [completion_end(ids, ppo.eos_ids, ppo.stops, self._decoded) for ids in generated]
        lengths = torch.tensor([n for n, _ in ends], device=input_ids.device)
        mask = (torch.arange(width, device=input_ids.device)[None, :] < lengths[:, None]).float()
        attention_mask = torch.cat([prompt_mask, mask.long()], dim=1)
        raw, figures = self._score(rows, [self._text(ids[:n]) for ids, (n, _) in zip(generated, ends)])

        with torch.no_grad():
            logprobs, values, entropy = self._rollout_forward(model, input_ids, attention_mask, width, policy=True)
            if ppo.reference is not None:
                ref_logprobs, _, _ = self._rollout_forward(ppo.reference, input_ids, attention_mask, width, policy=False)
        scores = process_scores(raw, ppo.moments, options.score_norm, options.score_clip)
        kl_coef = ppo.kl_controller.value
        if ppo.reference is not None:
            penalty = kl_per_token(logprobs, ref_logprobs, options.kl_penalty)
            kl = float(((logprobs - ref_logprobs) * mask).sum(1).mean())  # nats per completion
            figures.update(kl=kl, kl_coef=kl_coef)
            ppo.kl_controller.update(kl, len(rows))  # for the next batch: this one was scored already
        else:
            penalty = torch.zeros_like(logprobs)
        rewards = token_rewards(torch.tensor(scores, device=mask.device), penalty, mask, kl_coef)
        values = values * mask
        advantages, returns = gae(rewards, values, mask, options.gamma, options.lam)
        if options.whiten_advantages:
            advantages = masked_whiten(advantages, mask) * mask
        figures.update(
            {
                "score": sum(scores) / len(scores),
                "entropy": float(masked_mean(entropy, mask)),
                "completions/mean_length": float(lengths.float().mean()),
                "completions/clipped_ratio": sum(not ended for _, ended in ends) / len(ends),
            }
        )
        return Rollout(input_ids, attention_mask, mask, logprobs, values, advantages, returns), figures

    def _generate(self, model: Any, rows: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """One sampled completion per row, with the profile's stops and penalties. Sampling
        draws on torch's global RNG, which every checkpoint saves and a resume restores.
        Returns the generated ids (left-padded prompts, then completions) and the prompts'
        attention mask."""
        tok, options = self.processing_class, self.ppo.options
        prompts = [
            tok.apply_chat_template(row["prompt"], chat_template=self.ppo.template, tokenize=False, add_generation_prompt=True)
            for row in rows
        ]
        side, tok.padding_side = tok.padding_side, "left"  # decoder-only batches pad on the left
        try:
            batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.args.device)
        finally:
            tok.padding_side = side
        policy = self.accelerator.unwrap_model(model)
        was_training = policy.training
        policy.eval()
        try:
            with torch.no_grad():
                out = policy.generate(
                    **batch,
                    max_new_tokens=options.max_completion_length,
                    do_sample=True,
                    temperature=options.temperature,
                    top_p=options.top_p,
                    top_k=0,  # the whole (nucleus) distribution, as the log-probs assume
                    logits_processor=self.ppo.processors,
                    stop_strings=self.ppo.stops or None,
                    tokenizer=tok,
                    eos_token_id=sorted(self.ppo.eos_ids),
                    pad_token_id=tok.pad_token_id,
                )
        finally:
            policy.train(was_training)
        return out, batch["attention_mask"]

    def _decoded(self, ids: list[int]) -> str:
        return self.processing_class.decode(ids, skip_special_tokens=False)

    def _text(self, ids: list[int]) -> str:
        """A completion's text as rewards and previews see it: cut at its stop or end token."""
        from trainer.monitoring.preview_backend import cut_at_stops

        return cut_at_stops(self._decoded(ids), self.ppo.cuts)

    def _score(self, rows: list[dict[str, Any]], texts: list[str]) -> tuple[list[float], dict[str, float]]:
        """Each completion's reward (None, "does not apply", counts 0: the worst reward of a 0..1
        spec; TRL instead zeroes such a row's advantage, a known difference) and the reward
        figures ``reward``, ``reward_std``, ``rewards/<name>/mean|std``. Rewards see the rows as
        GRPO's do (``trainer.rewards.trl_adapter``): the prompt's last turn as the prompt, the
        other columns and ``prompt_messages`` as the row."""
        from trainer.rewards.trl_adapter import message_text

        column = self.ppo.reference_column
        prompts = [message_text(row["prompt"]) for row in rows]
        columns = [{**{k: v for k, v in row.items() if k != "prompt"}, "prompt_messages": row["prompt"]} for row in rows]
        scored = self.ppo.reward.score_detailed(prompts, texts, [row.get(column) or None for row in rows], columns)
        figures = {k: v for k, v in scored.summary().items() if v is not None}
        self._samples = [
            {"prompt": prompt, "completion": text, "reward": total, "rewards": {name: values[i] for name, values in scored.components.items()}}
            for i, (prompt, text, total) in enumerate(zip(prompts, texts, scored.total))
        ]
        return [0.0 if s is None else float(s) for s in scored.total], figures

    def _rollout_forward(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int, policy: bool):
        """:meth:`_forward` over the rollout in eval mode, as generation ran, ``mini_batch_size``
        rows at a time (the memory a gradient step may take is enough for a pass without one);
        for the ``policy`` also the values and entropies, for the reference only log-probs."""
        size = self.ppo.options.mini_batch_size or len(input_ids)
        rows = [slice(i, i + size) for i in range(0, len(input_ids), size)]
        chunks = [
            self._forward(model, input_ids[r], attention_mask[r], width, values=policy, entropy=policy, eval_mode=True)
            for r in rows
        ]
        return tuple(None if parts[0] is None else torch.cat(parts) for parts in zip(*chunks))

    def _forward(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        width: int,
        values: bool = True,
        entropy: bool = False,
        eval_mode: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The completion tokens' log-probs (at the sampling temperature), and if asked each
        completion position's value and entropy (None otherwise)."""
        was_training = model.training
        if eval_mode:
            model.eval()
        try:
            # generate numbers positions from the attention mask; a plain forward would count
            # the left padding, and the log-probs would not be those of what was sampled.
            out = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=(attention_mask.cumsum(1) - 1).clamp(min=0),
                logits_to_keep=width + 1,
                output_hidden_states=values,
                use_cache=False,
            )
        finally:
            model.train(was_training)
        logits = out.logits[:, :-1].float() / self.ppo.options.temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, -width:, None]).squeeze(-1)
        value = None
        if values:
            head = getattr(self.accelerator.unwrap_model(model), VALUE_HEAD)
            hidden = out.hidden_states[-1][:, -width - 1 : -1]
            value = head(hidden.to(head.weight.dtype)).squeeze(-1).float()
        return logprobs, value, entropy_from_logits(logits) if entropy else None

    def _update(self, model: Any, rollout: Rollout) -> tuple[float, dict[str, float]]:
        """``ppo_epochs`` passes of minibatch steps over the rollout, shuffled each pass with
        torch's global RNG. With ``target_kl``, the update stops before a step once the policy
        has moved further than that from the one that sampled; the first step is always taken
        (before it the policy *is* that one: its measured KL is rounding noise, or dropout)."""
        options = self.ppo.options
        model.train()
        n = rollout.input_ids.shape[0]
        size = options.mini_batch_size or n
        applied: dict[str, list[float]] = {k: [] for k in ("loss", "policy_loss", "value_loss", "clipfrac", "value_clipfrac", "grad_norm")}
        kls: list[float] = []
        stopped = failed = False
        for _ in range(options.ppo_epochs):
            order = torch.randperm(n).tolist()
            for start in range(0, n, size):
                index = torch.tensor(order[start : start + size], device=rollout.input_ids.device)
                logprobs, values, _ = self._forward(model, rollout.input_ids[index], rollout.attention_mask[index], rollout.width)
                parts = ppo_loss(
                    logprobs, values, rollout.logprobs[index], rollout.values[index], rollout.advantages[index],
                    rollout.returns[index], rollout.mask[index], options.cliprange, options.cliprange_value, options.vf_coef,
                )  # fmt: skip
                kls.append(parts.approx_kl)
                # decided by all ranks together: under DDP each must run as many backward passes
                past_kl = options.target_kl is not None and bool(applied["loss"]) and parts.approx_kl > options.target_kl
                if distributed.any_rank(past_kl):
                    stopped = True
                    break
                norm = self._apply(model, parts.loss)
                if norm is None:
                    failed = True
                    break
                for key in ("policy_loss", "value_loss", "clipfrac", "value_clipfrac"):
                    applied[key].append(getattr(parts, key))
                applied["loss"].append(float(parts.loss.detach()))
                applied["grad_norm"].append(norm)
            if stopped or failed:
                break
        self.early_stopped_updates += stopped
        figures = {k: sum(v) / len(v) for k, v in applied.items() if v}
        self._update_grad_norm = figures.pop("grad_norm", None)
        mean_loss = figures.pop("loss", math.nan)
        loss = math.nan if failed else mean_loss
        figures.update(approx_kl=sum(kls) / len(kls), early_stopped=float(stopped), minibatch_updates=float(len(applied["loss"])))
        return loss, figures

    def _apply(self, model: Any, loss: torch.Tensor) -> float | None:
        """One gradient step: backward, clip to ``max_grad_norm``, apply. Returns the gradient
        norm before clipping, or None (nothing applied) for a non-finite loss or norm."""
        self.accelerator.backward(loss)
        norm = float(self.accelerator.clip_grad_norm_(model.parameters(), self.args.max_grad_norm or math.inf))
        # under fp16 the gradient scaler meets Inf gradients on purpose and skips those steps itself
        bad = not math.isfinite(float(loss.detach())) or (not self.args.fp16 and not math.isfinite(norm))
        if distributed.any_rank(bad):  # one rank's bad loss skips the update on all of them
            self.optimizer.zero_grad()
            return None
        self.optimizer.step()
        self.optimizer.zero_grad()
        return norm

    # -- figures ----------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Each update's figures, averaged since the last log, join the logged loss."""
        if "loss" in logs and self._figures:
            logs = {**logs, **{k: sum(v) / len(v) for k, v in self._figures.items()}}
            self._figures = {}
        super().log(logs, start_time)

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> float | None:
        # The Trainer measures gradients after training_step, when this update's own steps have
        # used and cleared them: the figure is theirs (their mean norm before clipping).
        return self._update_grad_norm

    def floating_point_ops(self, inputs: Any) -> int:
        return 0  # a batch is prompts, not model inputs: transformers cannot count its FLOPs

    # -- checkpoints ------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The policy as a plain causal LM; inside a checkpoint (``_internal_call``), the value
        head and the PPO state beside it, written before transformers marks the checkpoint
        complete (its ``trainer_state.json`` comes last)."""
        super().save_model(output_dir, _internal_call)
        if _internal_call and self.args.should_save:
            self._save_ppo_state(Path(output_dir or self.args.output_dir))

    def _value_head(self) -> torch.nn.Module:
        return getattr(self.accelerator.unwrap_model(self.model), VALUE_HEAD)

    def _save_ppo_state(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self._value_head().state_dict().items()}, str(folder / VALUE_HEAD_FILE))
        ppo = self.ppo
        state = {
            "kl_controller": ppo.kl_controller.state_dict(),
            "score_moments": ppo.moments.state_dict() if ppo.moments is not None else None,
            "reward": ppo.reward.state_dict(),
            "early_stopped_updates": self.early_stopped_updates,
        }
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2), "utf-8")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_ppo_state(Path(resume_from_checkpoint))

    def _load_ppo_state(self, folder: Path) -> None:
        from safetensors.torch import load_file

        missing = [name for name in (VALUE_HEAD_FILE, STATE_FILE) if not (folder / name).is_file()]
        if missing:
            raise ValueError(
                f"{folder} has no {' or '.join(missing)}: it is not a checkpoint of a ppo run, so its value head and "
                "KL state cannot be restored"
            )
        head = self._value_head()
        head.load_state_dict(load_file(str(folder / VALUE_HEAD_FILE), device=str(head.weight.device)))
        state = json.loads((folder / STATE_FILE).read_text("utf-8"))
        self.ppo.kl_controller.load_state_dict(state["kl_controller"])
        if self.ppo.moments is not None and state["score_moments"] is not None:
            self.ppo.moments.load_state_dict(state["score_moments"])
        self.ppo.reward.load_state_dict(state["reward"])
        self.early_stopped_updates = int(state["early_stopped_updates"])

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # The value head is not in model.safetensors, by design; _load_ppo_state restores it.
        missing = [k for k in load_result.missing_keys if not k.startswith(f"{VALUE_HEAD}.")]
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))


# --- what PPO.build sets up (here, not in ppo.py, which must import no torch) ---------

VALUE_HEAD_FILE = "value_head.safetensors"  # in every checkpoint; the final model/ is the plain policy
STATE_FILE = "ppo_state.json"  # KL coefficient, score moments, reward post-processing state
VALUE_HEAD = "ppo_value_head"  # the head's submodule name on the policy


def keep_rows(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The data collator: a batch is its rows as they are (prompts are generated from, not fed)."""
    return features


def build_reference(model: Any, options: PPOOptions) -> Any:
    """A frozen copy of the starting model, or None where no KL penalty is asked for."""
    if options.beta == 0 and not options.adaptive_kl:
        return None
    reference = copy.deepcopy(model)
    reference.requires_grad_(False)
    return reference.eval()


def attach_value_head(model: Any) -> Any:
    """A scalar value head on the policy's last hidden state, as a submodule of the policy.

    As a submodule it is trained by the Trainer's optimizer, clipped with the policy's gradients,
    moved with the model and watched by the divergence guard. It is left out of the saved
    weights (``_keys_to_ignore_on_save``), so every saved ``model.safetensors`` is the plain
    causal LM that ``from_pretrained`` loads; :class:`PPOTrainer` saves it beside, in each
    checkpoint. Initialised to zero (values start at 0; the gradient still reaches it), so
    the start needs no random numbers.
    """
    import torch

    hidden = model.config.get_text_config().hidden_size
    head = torch.nn.Linear(hidden, 1, dtype=model.dtype, device=model.device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    model.add_module(VALUE_HEAD, head)
    model._keys_to_ignore_on_save = set(model._keys_to_ignore_on_save or ()) | {f"{VALUE_HEAD}.{k}" for k in head.state_dict()}
    return head


@dataclass
class PPOSetup:
    """What :class:`PPOTrainer` works with besides the model, built by :func:`build_setup`."""

    options: PPOOptions
    reference: Any  # frozen reference model, or None
    reward: Any  # trainer.rewards.RewardNode
    template: str  # chat template the prompts are rendered with
    reference_column: str  # the dataset column rewards compare against
    stops: list[str]  # stop strings generation ends at
    cuts: list[str]  # where a completion's text ends for the reward (stops and end tokens), as previews cut
    eos_ids: set[int]  # tokens that end a turn
    processors: Any  # the profile's generation penalties (a LogitsProcessorList)
    kl_controller: Any  # FixedKLController or AdaptiveKLController
    moments: Any  # RunningMoments of the scores, or None without score scaling


def build_setup(context: JobContext, options: PPOOptions, reference: Any) -> PPOSetup:
    from core.logit_penalty import build_logits_processors
    from trainer.rewards import RewardContext, build_reward

    tok = context.tokens
    rewards_context = RewardContext(profile=context.profile, device=context.device)
    stops = context.stop_sequences
    end_tokens = [t for t in (tok.end_token, tok.tokenizer.eos_token, tok.tokenizer.pad_token) if t]
    penalties = [(spec.strings, spec.penalty) for spec in context.profile.generation_penalties()]
    controller = (
        AdaptiveKLController(options.beta, options.kl_target, options.kl_horizon)
        if options.adaptive_kl
        else FixedKLController(options.beta)
    )
    return PPOSetup(
        options=options,
        reference=reference,
        reward=build_reward(options.reward_spec(context.config), rewards_context, "method.reward"),
        template=tok.template,
        reference_column=rewards_context.reference_column,
        stops=stops,
        cuts=list(dict.fromkeys([*stops, *end_tokens])),
        eos_ids={i for i in tok.eos_ids if i is not None},
        processors=build_logits_processors(tok.tokenizer, penalties),
        kl_controller=controller,
        moments=RunningMoments() if options.score_scaling or options.score_norm else None,
    )


def completion_end(tokens: list[int], eos_ids: set[int], stops: list[str], decode: Any) -> tuple[int, bool]:
    """How many of a generated row's tokens are its completion (the ending token included),
    and whether it ended by itself (False: it ran into ``max_completion_length``).

    Generation ends at an end-of-turn token or once the text holds a stop string, and pads the
    rest. The pad token may itself be a stop string (``<|endoftext|>`` is one for the bundled
    profiles), so where a completion ends is read from what generation stops at, never from the
    pad id: the first end token, else the shortest prefix whose text holds a stop string
    (bisection: a few decodes per row), else all of it.
    """
    end = next((i + 1 for i, t in enumerate(tokens) if t in eos_ids), None)
    upto = end or len(tokens)
    if not stops or not any(s in decode(tokens[:upto]) for s in stops):
        return max(upto, 1), end is not None
    lo, hi = 1, upto  # the shortest prefix that holds a stop string lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in decode(tokens[:mid]) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return lo, True
