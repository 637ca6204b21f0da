"""Data profiles and their registry.

``get_profile("regime3")`` looks a name up; ``"emoji_think+regime3"`` composes a wrapping profile
around an inner one; ``"package.module:Class"`` imports a custom profile. Unknown names are errors
that list the known ones.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from typing import Any

from trainer.profiles.base import AnswerCheck, DataProfile, PenaltySpec, PlainAnswer
from trainer.profiles.emoji_think import EmojiThinkProfile
from trainer.profiles.regime3 import Regime3Profile

PROFILES: dict[str, type[DataProfile]] = {}


def register_profile(cls: type[DataProfile], name: str | None = None) -> type[DataProfile]:
    """Add a profile class to the registry under ``name`` (default: ``cls.name``)."""
    PROFILES[name or cls.name] = cls
    return cls


for _cls in (EmojiThinkProfile, Regime3Profile, PlainAnswer):
    register_profile(_cls)


class UnknownProfileError(ValueError):
    pass


def resolve_profile_class(name: str) -> type[DataProfile]:
    """A registered name or ``package.module:Class`` -> the profile class."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise UnknownProfileError(f"cannot import profile {name!r}: {exc}") from None
        except Exception as exc:  # the user's module is broken: say where, not our traceback
            raise UnknownProfileError(f"cannot import profile {name!r}: {_where_it_broke(exc, module_name)}") from None
        cls = getattr(module, attr, None)
        if cls is None:
            raise UnknownProfileError(f"cannot import profile {name!r}: module {module_name!r} has no {attr!r}")
        if not (isinstance(cls, type) and issubclass(cls, DataProfile)):
            raise UnknownProfileError(f"{name!r} is not a DataProfile subclass")
        return cls
    if name not in PROFILES:
        known = ", ".join(sorted(PROFILES))
        raise UnknownProfileError(
            f"unknown profile {name!r}; known profiles: {known} "
            "(or an import path 'package.module:Class')"
        )
    return PROFILES[name]


def _where_it_broke(exc: BaseException, module_name: str) -> str:
    """``ErrorType: message at file:line`` for an exception raised while importing a module:
    the file and line of a syntax error, else the deepest frame in the user's own module."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} at {exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    origin = getattr(sys.modules.get(module_name), "__file__", None)
    try:
        spec = importlib.util.find_spec(module_name)
        origin = spec.origin if spec else origin
    except (ImportError, ValueError):
        pass
    own = [f for f in frames if f.filename == origin] or [
        f for f in frames if "importlib" not in f.filename and not f.filename.startswith("<frozen")
    ]
    where = f" at {own[-1].filename}:{own[-1].lineno}" if own else ""
    return f"{type(exc).__name__}: {exc}{where}"


def get_profile(name: str, options: dict[str, Any] | None = None) -> DataProfile:
    """Build the profile named ``name``; ``a+b`` makes ``a`` wrap ``b``.

    ``options`` go to the profiles whose option models know them; an option no profile in the
    chain knows is an error.
    """
    classes = [resolve_profile_class(part.strip()) for part in name.split("+")]
    options = dict(options or {})
    unknown = set(options) - {key for cls in classes for key in cls.Options.model_fields}
    if unknown:
        raise ValueError(f"profile {name!r}: unknown options {', '.join(sorted(unknown))}")
    profile: DataProfile | None = None
    for cls in reversed(classes):
        own = {k: v for k, v in options.items() if k in cls.Options.model_fields}
        if profile is not None and not cls.wraps:
            raise ValueError(f"profile {cls.name!r} cannot wrap another profile (in {name!r})")
        profile = cls(inner=profile, **own) if profile is not None else cls(**own)
    assert profile is not None
    return profile


__all__ = [
    "PROFILES",
    "AnswerCheck",
    "DataProfile",
    "EmojiThinkProfile",
    "PenaltySpec",
    "Regime3Profile",
    "UnknownProfileError",
    "get_profile",
    "register_profile",
    "resolve_profile_class",
]
