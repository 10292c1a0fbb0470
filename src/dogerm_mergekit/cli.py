"""Console scripts of dogerm-mergekit."""

from __future__ import annotations


def mergekit_yaml() -> None:
    """``dogerm-mergekit-yaml``: mergekit's own ``mergekit-yaml``, with dogerm registered in-process.

    For environments that skip ``.pth`` files (``python -S``/``-I``, some embedded interpreters).
    """
    from dogerm_mergekit import register

    register()
    from mergekit.scripts.run_yaml import main

    main()
