"""The one exception type users see for bad input: its message is one line saying what was
wrong and what would be right."""


class RewriteError(ValueError):
    """Bad input to lightning-rewrite (a layer, mask, sample, rank or file that cannot work)."""


def shortened(text: object, limit: int = 80) -> str:
    """``text`` as a message quotes it: at most ``limit`` characters, the cut said."""
    s = str(text)
    return s if len(s) <= limit else f"{s[:limit - 20]}…({len(s):,} characters)"
