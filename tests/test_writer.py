"""The streaming writer writes the bytes mergekit's own TensorWriter writes, in any arrival order."""

import json
import random

import pytest
import torch
from mergekit.io.tensor_writer import TensorWriter

from dogerm_mergekit import dtypes
from dogerm_mergekit.files import fast_digest_file
from dogerm_mergekit.writer import StreamingSafetensorsWriter, TensorLayout, WriteQueue


def _tensors():
    generator = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (7, 5), "b.bias": (3,), "c.weight": (16, 16), "d.weight": (2, 9), "e.scale": (1,)}
    made = {}
    for index, (name, shape) in enumerate(shapes.items()):
        dtype = (torch.bfloat16, torch.float32, torch.float16)[index % 3]
        made[name] = torch.randn(shape, generator=generator).to(dtype)
    return made


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("shard_size", [10**9, 300])
@pytest.mark.parametrize("shuffled", [False, True])
def test_bytes_equal_mergekits_tensor_writer(tmp_path, shard_size, shuffled):
    tensors = _tensors()
    reference = TensorWriter(str(tmp_path / "mergekit"), max_shard_size=shard_size)
    for name, tensor in tensors.items():
        reference.save_tensor(name, tensor)
    reference.finalize()

    layout = [TensorLayout(n, dtypes.of_tensor(t.dtype), tuple(t.shape)) for n, t in tensors.items()]
    (tmp_path / "ours").mkdir()
    order = sorted(tensors.items(), key=lambda item: (dtypes.FILE_ORDER[dtypes.of_tensor(item[1].dtype).code], item[0]))
    if shuffled:  # file order lets the writer hash while writing; any other order must give the same bytes
        random.Random(1).shuffle(order)
    with WriteQueue(budget=64) as queue:
        writer = StreamingSafetensorsWriter(tmp_path / "ours", layout, shard_size, queue,
                                            {"mergekit_version": "0.1.5"})
        for name, tensor in order:
            writer.write(name, tensor)
        digests = writer.close()
    assert _files(tmp_path / "ours") == _files(tmp_path / "mergekit")
    if shard_size == 300:
        assert json.loads((tmp_path / "ours" / "model.safetensors.index.json").read_text())["weight_map"]
    # digests computed while writing equal digests of the files; out-of-order shards are left to the caller
    for name, digest in digests.items():
        assert digest == fast_digest_file(tmp_path / "ours" / name)
    if not shuffled:
        assert set(digests) == {p.name for p in (tmp_path / "ours").iterdir()}


def test_wrong_or_missing_tensors_are_refused(tmp_path):
    layout = [TensorLayout("a", dtypes.by_name("float32"), (2,)), TensorLayout("b", dtypes.by_name("float32"), (2,))]
    with WriteQueue() as queue:
        writer = StreamingSafetensorsWriter(tmp_path, layout, 10**9, queue)
        with pytest.raises(ValueError, match="does not match the planned"):
            writer.write("a", torch.zeros(3))
        writer.write("a", torch.zeros(2))
        with pytest.raises(ValueError, match="written twice"):
            writer.write("a", torch.zeros(2))
        with pytest.raises(RuntimeError, match="1 tensors never written, e.g. b"):
            writer.close()


def test_float8_is_in_the_table_but_not_mergeable():
    entry = dtypes.by_code("F8_E4M3")
    assert entry.torch == torch.float8_e4m3fn and not entry.mergeable
    assert dtypes.by_name("torch.bfloat16").code == "BF16" and dtypes.by_code("I64") is None
    with pytest.raises(ValueError, match="known"):
        dtypes.by_name("float7")


def test_header_order_is_safetensors_own(tmp_path):
    from safetensors.torch import save_file

    from dogerm_mergekit.writer import safetensors_header

    tensors = {f"t{i}": torch.zeros(i + 1, dtype=d.torch) for i, d in enumerate(reversed(dtypes.DTYPES))}
    save_file(tensors, tmp_path / "x.safetensors", metadata={"format": "pt"})
    header, _ = safetensors_header([TensorLayout(n, dtypes.of_tensor(t.dtype), tuple(t.shape)) for n, t in tensors.items()])
    assert (tmp_path / "x.safetensors").read_bytes()[: len(header)] == header
