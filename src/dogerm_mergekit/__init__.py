"""DogeRM merges for mergekit: a reward model merged with a domain language model (arXiv 2407.01470).

Importing this package is cheap (a ``.pth`` hook imports it at every interpreter start); the heavy modules
are imported by the functions that need them.
"""

__version__ = "0.1.0"


def register() -> None:
    """Make ``merge_method: dogerm`` available to mergekit in this process (library use, ``python -S``)."""
    from dogerm_mergekit import _hook

    _hook.install()
    import mergekit.merge  # noqa: F401  (importing runs the patches)
    import mergekit.merge_methods.registry  # noqa: F401
