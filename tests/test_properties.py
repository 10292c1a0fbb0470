"""Property-based tests over the input space (hypothesis, seeded and bounded for CI): dtypes x families x
vocabulary layouts x lambdas x merge paths, each merged tensor compared with an independent computation from the
input files; and corruptions (NaN/Inf, truncation, renamed tensors, hostile manifests), each required to fail
with one line before anything is written."""

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mergekit.options import MergeOptions
from safetensors.torch import load_file, save_file

from dogerm_mergekit import testing as tiny
from dogerm_mergekit.errors import DogeRMError
from tests.mergeutil import config_dict, merge, tensors

DTYPES = st.sampled_from([torch.float32, torch.bfloat16, torch.float16])
LAYOUTS = ("same", "lm_pad", "lm_shifted", "rm_only_token")
BOUNDED = settings(max_examples=int(os.environ.get("DOGERM_PROPERTY_EXAMPLES", "40")), deadline=None,
                   derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _vocabularies(layout: str) -> tuple[list[str], list[str]]:
    base = tiny.vocabulary(200)
    return {
        "same": (base, base),
        "lm_pad": (base, tiny.vocabulary(200, extra=("[PAD]",))),
        "lm_shifted": (base, tiny.vocabulary(200, shift=17)),
        "rm_only_token": (tiny.vocabulary(200, extra=("[RM]",)), base),
    }[layout]


def _build(root: Path, family: str, layout: str, dtypes: list[torch.dtype], domains: int) -> tuple[Path, list[Path]]:
    """An RM in ``dtypes[0]`` and ``domains`` domain LMs, the i-th in ``dtypes[i]`` (different seeds)."""
    rm_tokens, lm_tokens = _vocabularies(layout)
    rm, _ = tiny.build_pair(root / "rm", family=family, rm_tokens=rm_tokens, lm_tokens=lm_tokens, dtype=dtypes[0])
    lms = []
    for index in range(domains):
        built = tiny.build_pair(root / f"lm{index}", family=family, rm_tokens=rm_tokens, lm_tokens=lm_tokens,
                                dtype=dtypes[index + 1], seed=index + 1)
        lms.append(built[1])
    return rm, lms


def _expected(rm: Path, lms: list[Path], lams: list[float], out_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The merge written out from the input files: rows aligned by token string, the formula in fp32, one rounding."""
    from transformers import AutoTokenizer

    a = tensors(rm)
    others = [tensors(lm) for lm in lms]
    rm_vocab = AutoTokenizer.from_pretrained(rm).get_vocab()
    lm_vocabs = [AutoTokenizer.from_pretrained(lm).get_vocab() for lm in lms]
    weights = torch.tensor(lams, dtype=torch.float32)
    expected = {}
    for name, x in a.items():
        if name not in others[0]:  # the head
            expected[name] = x.to(out_dtype)
            continue
        x = x.float()
        ys = [o[name].float() for o in others]
        if "embed_tokens" in name:  # rows of the RM's tokens, taken from each LM by token string
            rows = {i: t for t, i in rm_vocab.items()}
            shared = [i for i in range(x.shape[0]) if all(rows.get(i) in v for v in lm_vocabs)]
            ys = [x.clone().index_put_((torch.tensor(shared),), y[[v[rows[i]] for i in shared]])
                  for y, v in zip(ys, lm_vocabs)]
        total = (ys[0] - x) * weights[0]
        for y, weight in zip(ys[1:], weights[1:]):
            total = total + (y - x) * weight
        expected[name] = (total + x).to(out_dtype)
    return expected


@BOUNDED
@given(family=st.sampled_from(sorted(tiny.FAMILIES)), layout=st.sampled_from(LAYOUTS),
       dtypes=st.lists(DTYPES, min_size=3, max_size=3), out_dtype=st.one_of(st.none(), DTYPES),
       domains=st.integers(1, 2), lams=st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0]), min_size=2,
                                                 max_size=2),
       path=st.sampled_from(["mergekit-yaml", "dogerm-sweep", "in-memory"]))
def test_every_input_combination_merges_as_the_formula(family, layout, dtypes, out_dtype, domains, lams, path):
    lams = lams[:domains]
    if sum(lams) > 1:
        lams = [lam / 2 for lam in lams]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rm, lms = _build(root, family, layout, dtypes, domains)
        raw = config_dict(rm, lms[0], lams[0], **({"out_dtype": str(out_dtype).removeprefix("torch.")}
                                                   if out_dtype else {}))
        raw["models"] = [{"model": str(rm)}] + [{"model": str(lm), "parameters": {"lambda": lam}}
                                                for lm, lam in zip(lms, lams)]
        tokenizer = {"source": "base"} if layout == "lm_shifted" else None  # ids differ: rows aligned by string
        if tokenizer:
            raw["tokenizer"] = tokenizer
        if path == "mergekit-yaml":
            from dogerm_mergekit.merge import run_dogerm_merge
            from mergekit.config import MergeConfiguration

            run_dogerm_merge(MergeConfiguration.model_validate(raw), root / "out", MergeOptions(quiet=True))
            merged = tensors(root / "out")
        elif path == "dogerm-sweep":
            from dogerm_mergekit.sweep import run_sweep

            point = lams[0] if domains == 1 else tuple(lams)
            result = run_sweep(yaml.safe_dump(raw), root / "sweep", [point], MergeOptions(quiet=True))
            merged = tensors(root / "sweep" / result.written[0])
        else:
            from dogerm_mergekit.inmemory import InMemoryMerger

            merger = InMemoryMerger(str(rm), [str(lm) for lm in lms], tokenizer=tokenizer)
            merged = merger.state_dict(lams)
            out_dtype = None  # the in-memory merger writes the RM's dtype, as a merge without out_dtype does
        expected = _expected(rm, lms, lams, out_dtype or dtypes[0])
        assert merged.keys() == expected.keys()
        for name, value in expected.items():
            assert merged[name].dtype == value.dtype and torch.equal(merged[name], value), name


def _corrupt(root: Path, rm: Path, lm: Path, corruption: str) -> None:
    file = (rm if corruption in ("inf_in_rm", "nan_in_head") else lm) / "model.safetensors"
    data = load_file(file)
    if corruption == "nan_in_head":
        data["score.weight"] = data["score.weight"].clone()
        data["score.weight"].view(-1)[1] = float("nan")
    elif corruption in ("nan_in_lm", "inf_in_rm"):
        name = "model.layers.1.self_attn.v_proj.weight"
        data[name] = data[name].clone()
        data[name].view(-1)[5] = float("nan") if corruption == "nan_in_lm" else float("inf")
    elif corruption == "renamed_tensor":
        data["model.layers.0.mlp.upproj.weight"] = data.pop("model.layers.0.mlp.up_proj.weight")
    if corruption == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 3])
    else:
        save_file(data, file, metadata={"format": "pt"})


@settings(max_examples=24, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(corruption=st.sampled_from(["nan_in_lm", "inf_in_rm", "nan_in_head", "truncated", "renamed_tensor"]),
       dtype=DTYPES, family=st.sampled_from(sorted(tiny.FAMILIES)))
def test_corrupt_inputs_fail_in_one_line_before_anything_is_written(corruption, dtype, family):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rm, lm = tiny.build_pair(root / "in", family=family, rm_tokens=tiny.vocabulary(100), dtype=dtype)
        _corrupt(root, rm, lm, corruption)
        with pytest.raises(DogeRMError) as caught:
            merge(root / "out", rm, lm, 0.4)
        assert "\n" not in str(caught.value) and str(caught.value)
        assert not (root / "out").exists() and sorted(p.name for p in root.iterdir()) == ["in"]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    rm, lm = tiny.build_pair(root / "in", rm_tokens=tiny.vocabulary(100))
    from dogerm_mergekit.sweep import run_sweep

    run_sweep(yaml.safe_dump(config_dict(rm, lm)), root / "sweep", [0.0, 0.5], MergeOptions(quiet=True))
    return root / "sweep"


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.sampled_from(["..", ".", "../escape", "/abs", "a/../../b", "lambda-0.50/..", "", " x",
                                       ".hidden", "lambda-0.50\x00", "~root"]),
                      st.text(min_size=1, max_size=12)),
       where=st.sampled_from(["checkpoint", "file"]))
def test_hostile_manifest_names_are_refused_by_every_reader(finished_sweep, name, where):
    import shutil

    from dogerm_mergekit.contract import _PLAIN, finished_points
    from dogerm_mergekit.hub import push_sweep

    sweep = Path(tempfile.mkdtemp()) / "sweep"
    shutil.copytree(finished_sweep, sweep, symlinks=True)
    manifest = json.loads((sweep / "sweep.json").read_text())
    record = manifest["checkpoints"]["lambda-0.50"]
    if where == "checkpoint":
        manifest["checkpoints"][name] = record
    else:
        record["files"][name] = next(iter(record["files"].values()))
    (sweep / "sweep.json").write_text(json.dumps(manifest))

    class NoNetwork:
        endpoint = "http://nowhere"

        def __getattr__(self, attribute):
            raise AssertionError(f"the Hub was called ({attribute}) for a hostile manifest")

    try:
        if _PLAIN.match(name):  # a plain name inside the sweep: no escape, but a missing folder or file is caught
            try:
                finished_points(sweep)
            except DogeRMError as error:
                assert "\n" not in str(error)
            return
        for read in (lambda: finished_points(sweep), lambda: push_sweep(sweep, "me/x", api=NoNetwork())):
            with pytest.raises(DogeRMError, match="not a plain name") as caught:
                read()
            assert "\n" not in str(caught.value)
    finally:
        shutil.rmtree(sweep.parent)
