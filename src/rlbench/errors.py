"""User-facing errors: one line that names the bad value and what is allowed."""


class RLBenchError(Exception):
    """Base class for errors the CLI reports as a single line (no traceback)."""


class ConfigError(RLBenchError, ValueError):
    """A configuration value is invalid (bad range, unknown env id, wrong action space)."""


class CheckpointError(RLBenchError):
    """A checkpoint is missing, corrupt or does not match the run."""


class NonFiniteLossError(RLBenchError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""
