"""``dogerm-eval sweep --in-memory``: evaluate DogeRM lambdas without writing checkpoints.

Both models are read and aligned once by ``dogerm_mergekit.inmemory.InMemoryMerger`` (the merge method's own
kernel); for each lambda the merged weights are loaded into one reward-model network on the scoring device. The
members behave like sweep checkpoints (slug ``in-memory--RM+DOMAIN@lambda-0.30``), so results, caching and the
sweep report are the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from dogerm_eval.errors import BenchmarkError, ModelError
from dogerm_eval.models import ResolvedModel, locate_model, resolve_model
from dogerm_eval.scorer import RewardScorer


class InMemorySweep:
    """The members of an in-memory sweep and a scorer factory that loads each member's merged weights."""

    def __init__(self, reward_model: str, domain_model: str, lambdas: str, trust_remote_code: bool = False):
        """``lambdas``: start:stop:step (stop included) or a comma list, as ``dogerm-sweep --lambdas`` takes."""
        from mergekit.options import MergeOptions

        from dogerm_mergekit.contract import checkpoint_name, parse_lambdas
        from dogerm_mergekit.errors import DogeRMError
        from dogerm_mergekit.inmemory import InMemoryMerger
        from dogerm_mergekit.sweep import input_fingerprint

        try:
            values = parse_lambdas(lambdas)
        except DogeRMError as exc:
            raise BenchmarkError(str(exc)) from exc
        self.reward = resolve_model(reward_model, trust_remote_code)
        try:
            self.merger = InMemoryMerger(str(self.reward.path), str(locate_model(domain_model).path),
                                         MergeOptions(quiet=True, trust_remote_code=trust_remote_code))
        except DogeRMError as exc:
            raise ModelError(f"cannot merge {reward_model} with {domain_model}: {exc}") from exc
        inputs = json.dumps([input_fingerprint(m) for m in (self.merger.plan.reward_model,
                                                             self.merger.plan.domain_model)], sort_keys=True)
        pair = f"{Path(reward_model).name}+{Path(domain_model).name}"
        self._lambdas: dict[str, float] = {}
        self.members: list[tuple[float, ResolvedModel]] = []
        for lam in values:
            name = checkpoint_name(lam)
            self._lambdas[name] = lam
            key = "merge:" + hashlib.sha256(f"{inputs}\n{name}".encode()).hexdigest()
            member = ResolvedModel(path=self.reward.path, ref=f"{reward_model}+{domain_model}@{name}",
                                   repo_id=f"in-memory/{pair}", revision=name, content_key=key)
            self.members.append((lam, member))

    def scorer_factory(self, make: Callable[[ResolvedModel], RewardScorer]) -> Callable[[ResolvedModel], RewardScorer]:
        """Wrap ``make``: one network (the reward model's, built once) whose weights become each member's merge."""
        built: list[RewardScorer] = []

        def factory(member: ResolvedModel) -> RewardScorer:
            if not built:
                built.append(make(self.reward))
            scorer = built[0]
            scorer.load_weights(member, self.merger.state_dict(self._lambdas[member.revision]))
            return scorer

        return factory
