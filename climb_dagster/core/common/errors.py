"""Errors raised for bad input; messages always name the file, column or value at fault."""


class ClimbInputError(ValueError):
    """Input that the pipeline refuses (bad schema, bad values, bad config)."""


class ClimbResourceError(RuntimeError):
    """The machine lacks what a step needs now (free memory for a proxy); the inputs may fit elsewhere."""
