"""What a training method is: typed options, the data shape it trains on, and a build step that
returns a ready transformers / TRL trainer on the shared job context.

A method module imports only pydantic at the top (so ``--validate`` stays light) and its
libraries inside :meth:`Method.build`. The engine core names no method: it asks the registry
(``trainer.methods``) for ``config.method.name`` and calls ``build``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from trainer.config.schema import MethodOptions

if TYPE_CHECKING:
    from trainer.core.context import JobContext


class Method:
    """Base of every method. Subclasses set ``name``, ``Options`` and ``data_shape``."""

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    # Which shape the data layer hands this method (DESIGN.md, "Data shapes"): "conversations"
    # (SFT's input_ids / labels), "preference", "unpaired", "prompts", "labeled_text".
    data_shape: ClassVar[str] = "conversations"

    def __init__(self, options: MethodOptions):
        self.options = options

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        """A transformers ``Trainer`` (subclass) ready to ``train()``, with ``callbacks``."""
        raise NotImplementedError

    def final_metrics(self, trainer: Any) -> dict[str, Any]:
        """Method-specific figures for the result and status (none by default)."""
        return {}
