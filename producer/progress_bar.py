"""The producer's progress bars: drawn on a terminal, left out of redirected output."""

from tqdm import tqdm


def progress_bar(total: int, unit: str, description: str, show: bool = True) -> tqdm:
    """Return a bar counting to ``total`` ``unit``s, removed from the screen when done.

    The bar is hidden when ``show`` is false or when stderr is not a terminal: a log
    file would otherwise collect every redraw. A hidden bar does not count, so progress
    must not be read back from it.
    """
    # disable=None is tqdm's "hide unless writing to a terminal".
    return tqdm(total=total, unit=unit, desc=description, leave=False,
                disable=None if show else True)
