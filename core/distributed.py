"""One job on several processes (``torchrun`` / ``accelerate launch`` of the CLI).

Every rank runs the same job; transformers (through accelerate) shards the batches and averages
the gradients. What the engine adds, so that N processes are one job and not N:

- one plan: rank 0 picks the run folder and checkpoint and tells the others (:func:`agree`), so
  no rank refuses the folder another rank just made, and a timestamped run name is one name;
- data prepared once: rank 0 first, then the others find it in the cache (:func:`main_first`);
- one writer: the status file, logs, data report, previews and final files come from rank 0
  only (:func:`is_main_process`); the trainer saves checkpoints from rank 0 itself;
- one stop: a signal any rank receives stops every rank after the same step (:func:`any_rank`),
  or the ranks would wait on each other's gradients forever.

With one process (no ``WORLD_SIZE``) each helper is a no-op and nothing initialises torch.distributed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the only one that writes status, logs and files."""
    return int(os.environ.get("RANK", "0")) == 0


_GROUP: list[Any] = []


def _group() -> Any:
    """A gloo process group for the engine's own coordination (small CPU objects and flags,
    whatever backend trains). The default group is made here if nothing has made it yet, from the
    launcher's environment (MASTER_ADDR, RANK...); accelerate, and so the Trainer, adopt it."""
    import torch
    import torch.distributed as dist

    if not _GROUP:
        if not dist.is_initialized():
            cuda = torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        _GROUP.append(dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD)
    return _GROUP[0]


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first; the others run it after (e.g. read what it cached). If rank 0
    fails inside, the others wait until the launcher ends them (torchrun does, on any failure)."""
    if world_size() == 1:
        yield
        return
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


def agree(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its value (or the exception it raised) on every rank."""
    if world_size() == 1:
        return compute()
    import torch.distributed as dist

    box: list[Any] = [None]
    if is_main_process():
        try:
            box[0] = ("value", compute())
        except Exception as exc:  # every rank raises it, or the others would wait forever
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0, group=_group())
    kind, payload = box[0]
    if kind == "error":
        raise payload
    return payload


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (a collective: every rank must call it)."""
    if world_size() == 1:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_group())
    return bool(value.item())


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier(group=_group())
