"""The streaming writer writes the bytes mergekit's own TensorWriter writes, in any arrival order."""

import errno
import json
import os
import random

import pytest
import torch
from mergekit.io.tensor_writer import TensorWriter
from safetensors.torch import load_file

import dogerm_mergekit.writer as writer_module
from dogerm_mergekit import dtypes
from dogerm_mergekit.files import fast_digest_file
from dogerm_mergekit.writer import StreamingSafetensorsWriter, TensorLayout, WriteQueue, write_rows


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


def _direct_io_supported(folder) -> bool:
    """Whether ``folder``'s file system takes direct I/O (asked independently of the writer)."""
    try:
        fd = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except (AttributeError, OSError):
        return False
    os.close(fd)
    (folder / "probe").unlink()
    return True


@pytest.mark.parametrize("shard_size", [10**9, 300])
@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("pieces", [False, True])
@pytest.mark.parametrize("direct", [True, False])
def test_bytes_equal_mergekits_tensor_writer(tmp_path, monkeypatch, shard_size, shuffled, pieces, direct):
    tensors = _tensors()
    reference = TensorWriter(str(tmp_path / "mergekit"), max_shard_size=shard_size)
    for name, tensor in tensors.items():
        reference.save_tensor(name, tensor)
    reference.finalize()

    monkeypatch.setattr(writer_module, "DIRECT_BLOCK", 512)  # many direct blocks and a ragged tail
    opened = []
    open_direct = writer_module._open_direct if direct else lambda path: None
    monkeypatch.setattr(writer_module, "_open_direct", lambda path: opened.append(open_direct(path)) or opened[-1])
    layout = [TensorLayout(n, dtypes.of_tensor(t.dtype), tuple(t.shape)) for n, t in tensors.items()]
    (tmp_path / "ours").mkdir()
    order = sorted(tensors.items(), key=lambda item: (dtypes.FILE_ORDER[dtypes.of_tensor(item[1].dtype).code], item[0]))
    if shuffled:  # file order lets the writer hash (and stream) while writing; any other order gives the same bytes
        random.Random(1).shuffle(order)
    with WriteQueue(budget=64) as queue:
        writer = StreamingSafetensorsWriter(tmp_path / "ours", layout, shard_size, queue,
                                            {"mergekit_version": "0.1.5"})
        for name, tensor in order:
            if pieces:  # as a sweep writes: flat pieces in order, of uneven sizes
                flat = tensor.reshape(-1)
                for start in range(0, flat.numel(), 17):
                    writer.write(name, flat[start : start + 17].clone(), start=start)
            else:
                writer.write(name, tensor)
        digests = writer.close()
    assert _files(tmp_path / "ours") == _files(tmp_path / "mergekit")
    assert all((fd is not None) == (direct and _direct_io_supported(tmp_path)) for fd in opened) and opened
    if shard_size == 300:
        assert json.loads((tmp_path / "ours" / "model.safetensors.index.json").read_text())["weight_map"]
    # digests computed while writing equal digests of the files; out-of-order shards are left to the caller
    for name, digest in digests.items():
        assert digest == fast_digest_file(tmp_path / "ours" / name)
    if not shuffled:
        assert set(digests) == {p.name for p in (tmp_path / "ours").iterdir()}


def test_a_file_system_refusing_direct_writes_gets_ordinary_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "DIRECT_BLOCK", 512)
    refused = []
    monkeypatch.setattr(writer_module, "_open_direct", lambda path: refused.append(os.open(path, os.O_WRONLY))
                        or refused[-1])
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        if fd in refused:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    tensor = torch.arange(700, dtype=torch.float32)
    with WriteQueue() as queue:
        writer = StreamingSafetensorsWriter(tmp_path, [TensorLayout("t", dtypes.by_name("float32"), (700,))],
                                            10**9, queue)
        writer.write("t", tensor)
        digests = writer.close()
    assert refused and torch.equal(load_file(tmp_path / "model.safetensors")["t"], tensor)
    assert digests["model.safetensors"] == fast_digest_file(tmp_path / "model.safetensors")


def test_rows_of_a_block_go_to_their_own_outputs_with_one_queued_write(tmp_path):
    layout = [TensorLayout("w", dtypes.by_name("bfloat16"), (4, 6))]
    block = torch.arange(3 * 24, dtype=torch.float32).reshape(3, 24).to(torch.bfloat16)
    with WriteQueue() as queue:
        writers = []
        for k in range(3):
            (tmp_path / str(k)).mkdir()
            writers.append(StreamingSafetensorsWriter(tmp_path / str(k), layout, 10**9, queue))
        write_rows(writers, "w", 0, block[:, :10], queue)
        write_rows(writers, "w", 10, block[:, 10:], queue)
        assert len({id(f) for w in writers for f in w._futures}) == 2
        for writer in writers:
            writer.close()
    for k in range(3):
        assert torch.equal(load_file(tmp_path / str(k) / "model.safetensors")["w"], block[k].reshape(4, 6))


def test_pieces_past_the_end_or_twice_are_refused(tmp_path):
    layout = [TensorLayout("a", dtypes.by_name("float32"), (4,))]
    with WriteQueue() as queue:
        writer = StreamingSafetensorsWriter(tmp_path, layout, 10**9, queue)
        with pytest.raises(ValueError, match="past its end"):
            writer.write("a", torch.zeros(2), start=3)
        writer.write("a", torch.zeros(3), start=0)
        with pytest.raises(ValueError, match="written twice"):
            writer.write("a", torch.zeros(2), start=2)
        with pytest.raises(RuntimeError, match="1 tensors never written, e.g. a"):
            writer.close()


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


def test_an_output_lock_is_exclusive_and_leaves_no_file(tmp_path):
    from filelock import FileLock

    from dogerm_mergekit.errors import OutputError
    from dogerm_mergekit.files import output_lock

    out = tmp_path / "out"
    with output_lock(out):
        assert (tmp_path / ".out.lock").exists()
        with pytest.raises(OutputError, match="being written by another run"):
            with output_lock(out):
                pass
    assert not (tmp_path / ".out.lock").exists()
    with pytest.raises(RuntimeError):
        with output_lock(out):
            raise RuntimeError("a failed merge")
    assert list(tmp_path.iterdir()) == []
    with FileLock(tmp_path / ".out.lock"):  # another tool's flock on the same file is respected
        with pytest.raises(OutputError):
            with output_lock(out):
                pass
