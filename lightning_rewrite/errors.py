"""The one exception type users see for bad input: its message is one line saying what was
wrong and what would be right."""


class RewriteError(ValueError):
    """Bad input to lightning-rewrite (a layer, mask, sample, rank or file that cannot work)."""
