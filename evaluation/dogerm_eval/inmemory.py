"""``dogerm-eval sweep --in-memory``: evaluate DogeRM lambdas (or a grid of per-domain lambdas) without writing
checkpoints.

The models are read and aligned once by ``dogerm_mergekit.inmemory.InMemoryMerger`` (the merge method's own
kernel); for each lambda the merged weights are loaded into one reward-model network on the scoring device. The
members behave like sweep checkpoints (slug ``in-memory--RM+DOMAIN@lambda-0.30``), so results, caching and the
sweep report are the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from dogerm_eval.errors import BenchmarkError, ModelError
from dogerm_eval.models import ResolvedModel, locate_model, resolve_model
from dogerm_eval.scorer import RewardScorer
from dogerm_mergekit.contract import Point, lambda_point

IN_MEMORY_FIX = ("(--in-memory does not extrapolate: write the checkpoints with dogerm-sweep from a configuration "
                 "with `allow_extrapolation: true` under `parameters`, then evaluate that sweep)")


class InMemorySweep:
    """The members of an in-memory sweep and a scorer factory that loads each member's merged weights."""

    def __init__(self, reward_model: str, domain_models: str | Sequence[str], lambdas: str | None = None,
                 trust_remote_code: bool = False, grids: Sequence[str] = ()):
        """``lambdas``: start:stop:step (stop included) or a comma list, as ``dogerm-sweep --lambdas`` takes (one
        domain model); ``grids``: ``lambda[MODEL]=SPEC`` as ``dogerm-sweep --grid`` takes (several: the product,
        vectors summing outside [0, 1] left out; a model no grid names keeps lambda 0)."""
        import yaml
        from mergekit.options import MergeOptions

        from dogerm_mergekit.contract import grid_checkpoint_name, parse_grid, parse_lambdas
        from dogerm_mergekit.errors import DogeRMError
        from dogerm_mergekit.inmemory import InMemoryMerger
        from dogerm_mergekit.method import check_lambdas
        from dogerm_mergekit.sweep import grid_points, input_fingerprint

        domains = [domain_models] if isinstance(domain_models, str) else list(domain_models)
        self.reward = resolve_model(reward_model, trust_remote_code)
        paths = [str(locate_model(domain).path) for domain in domains]
        try:
            if grids:  # MODEL as the user named it (a Hub id's name, a folder's), not the resolved snapshot path
                config = {"merge_method": "dogerm", "base_model": reward_model,
                          "models": [{"model": domain, "parameters": {"lambda": 0.0}} for domain in domains]}
                vectors = grid_points(yaml.safe_dump(config), [parse_grid(spec) for spec in grids],
                                      keep="--in-memory does not extrapolate; dogerm-sweep does, with "
                                           "allow_extrapolation: true in its configuration")
            elif len(domains) == 1:
                vectors = [(lam,) for lam in parse_lambdas(lambdas or "0:1:0.05")]
            else:
                raise BenchmarkError(f"{len(domains)} domain models: give their lambdas as --grid "
                                     "lambda[MODEL]=SPEC (one per model), not --lambdas")
            for vector in vectors:  # before any model is read
                check_lambdas(vector, fix=IN_MEMORY_FIX)
        except DogeRMError as exc:
            raise BenchmarkError(str(exc)) from exc
        try:
            self.merger = InMemoryMerger(str(self.reward.path), paths,
                                         MergeOptions(quiet=True, trust_remote_code=trust_remote_code))
        except DogeRMError as exc:
            raise ModelError(f"cannot merge {reward_model} with {', '.join(domains)}: {exc}") from exc
        plan = self.merger.plan
        inputs = json.dumps([input_fingerprint(m) for m in (plan.reward_model, *plan.domain_models)], sort_keys=True)
        pair = "+".join(Path(m).name for m in (reward_model, *domains))
        self._vectors: dict[str, tuple[float, ...]] = {}
        self.members: list[tuple[Point, ResolvedModel]] = []
        for vector in vectors:
            name = grid_checkpoint_name(vector)
            self._vectors[name] = vector
            key = "merge:" + hashlib.sha256(f"{inputs}\n{name}".encode()).hexdigest()
            member = ResolvedModel(path=self.reward.path, ref=f"{'+'.join((reward_model, *domains))}@{name}",
                                   repo_id=f"in-memory/{pair}", revision=name, content_key=key)
            point = lambda_point(vector[0]) if len(vector) == 1 else {f"lambda[{d}]": v for d, v in zip(domains, vector)}
            self.members.append((point, member))

    def scorer_factory(self, make: Callable[[ResolvedModel], RewardScorer]) -> Callable[[ResolvedModel], RewardScorer]:
        """Wrap ``make``: one network (the reward model's, built once) whose weights become each member's merge."""
        built: list[RewardScorer] = []

        def factory(member: ResolvedModel) -> RewardScorer:
            if not built:
                built.append(make(self.reward))
            scorer = built[0]
            scorer.load_weights(member, self.merger.state_dict(self._vectors[member.revision]))
            return scorer

        return factory
