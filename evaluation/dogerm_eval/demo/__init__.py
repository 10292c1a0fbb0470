"""A miniature DogeRM world (tiny trained Llama models and eval data) for the ``dogerm-demo`` command.

``world`` builds and caches it, ``corpus`` writes its texts, ``cli`` runs the demo.
"""
