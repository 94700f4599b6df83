"""Settings dataclasses whose fields are named like the command-line flags that set them."""

from dataclasses import fields


class FlagSettings:
    """Mixin for a dataclass of settings named like flags (SamplerSettings, StepSettings, ...)."""

    @classmethod
    def from_args(cls, args):
        """The settings named like args' attributes; None or absent (a flag the recipe has not
        resolved, a script without it) keeps the default."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None})
