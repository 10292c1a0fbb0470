"""A miniature DogeRM world (tiny trained Llama models and eval data) for the ``dogerm-demo`` command."""

from dogerm_eval.demo.world import World, WorldBuildError, build_world

__all__ = ["World", "WorldBuildError", "build_world"]
