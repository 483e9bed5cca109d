"""One colour convention for every view: red = toward a trait's positive pole, blue = toward
its negative pole, white/transparent = zero.

Every heatmap of signed trait scores uses ``SIGNED_SCALE`` (plotly's ``RdBu_r``: low values
blue, high values red), and every legend or colour bar states the convention with
``pole_legend``. The token stream (``widgets/static/token_stream.js``) uses the same two
colours, ``POSITIVE_RGB`` and ``NEGATIVE_RGB``.

Example:
    >>> SIGNED_SCALE
    'RdBu_r'
    >>> pole_legend("cosine with optimism")
    'cosine with optimism (red = positive pole, blue = negative)'
"""

from __future__ import annotations

SIGNED_SCALE = "RdBu_r"
POSITIVE_RGB = (214, 39, 40)
NEGATIVE_RGB = (31, 119, 180)
POLE_NOTE = "red = positive pole, blue = negative"


def pole_legend(label: str) -> str:
    """``label`` followed by the colour convention, for a colour bar title or a legend.

    Example:
        >>> pole_legend("projection")
        'projection (red = positive pole, blue = negative)'
    """
    return f"{label} ({POLE_NOTE})"
