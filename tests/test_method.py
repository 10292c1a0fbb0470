"""The kernel on its own: exactness, dtypes, lambda checks, and mergekit's entry points."""

import numpy as np
import pytest
import torch
from mergekit.merge_methods import merge_tensors

from dogerm_mergekit import register
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.method import METHOD, interpolate
from tests.mergeutil import ulps


def test_lambda_zero_is_bit_identical_and_one_gives_the_domain_tensor():
    rm, lm = torch.randn(64, 32), torch.randn(64, 32)
    assert torch.equal(interpolate(rm, lm, 0.0), rm)
    assert torch.allclose(interpolate(rm, lm, 1.0), lm, rtol=0, atol=1e-6)
    same = rm.clone()
    assert torch.equal(interpolate(rm, same, 0.37), rm)  # identical rows stay exact


def test_lambda_03_is_within_one_ulp_of_independent_references():
    rm, lm = torch.randn(256, 64), torch.randn(256, 64)
    out = interpolate(rm, lm, 0.3)
    scale = torch.maximum(rm.abs(), lm.abs())
    independent_fp32 = torch.from_numpy(rm.numpy() + np.float32(0.3) * (lm.numpy() - rm.numpy()))
    assert ulps(out, independent_fp32, out) <= 1
    exact = 0.7 * rm.double() + 0.3 * lm.double()
    assert ulps(out, exact, scale) <= 1.5  # two fp32 roundings of operands of this size
    assert ulps(interpolate(rm, lm, 0.31), exact, scale) > 100


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_are_computed_in_fp32_and_returned_in_their_dtype(dtype):
    rm, lm = torch.randn(16, 8).to(dtype), torch.randn(16, 8).to(dtype)
    out = interpolate(rm, lm, 0.25)
    assert out.dtype == dtype
    assert torch.equal(out, (rm.float() + 0.25 * (lm.float() - rm.float())).to(dtype))
    assert torch.equal(interpolate(rm, lm, 0.0), rm)


def test_fp64_inputs_are_computed_in_fp64():
    rm, lm = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    assert torch.equal(interpolate(rm, lm, 0.3), rm + 0.3 * (lm - rm))


def test_non_float_tensors_are_refused():
    with pytest.raises(TypeError, match="floating-point"):
        interpolate(torch.arange(4), torch.arange(4), 0.5)


def test_merge_tensors_entry_point_binds_lambda_to_the_domain_model():
    register()
    rm, lm = torch.randn(10, 4), torch.randn(10, 4)
    out = merge_tensors([rm, lm], METHOD, base_index=0, parameters={"lambda": 0.3})
    assert torch.equal(out, interpolate(rm, lm, 0.3))
    swapped = merge_tensors([lm, rm], METHOD, base_index=1, parameters={"lambda": 0.3})
    assert torch.equal(swapped, out)


@pytest.mark.parametrize("lam", [-0.1, 1.5, float("nan")])
def test_lambda_outside_unit_interval_needs_explicit_extrapolation(lam):
    rm, lm = torch.randn(4), torch.randn(4)
    with pytest.raises(DogeRMConfigError, match="lambda"):
        merge_tensors([rm, lm], METHOD, base_index=0, parameters={"lambda": lam})
    if lam == lam:  # finite values are accepted on request
        out = merge_tensors(
            [rm, lm], METHOD, base_index=0, parameters={"lambda": lam, "allow_extrapolation": True}
        )
        assert torch.allclose(out, rm + lam * (lm - rm))


def test_method_is_registered_by_name_once():
    from mergekit import merge_methods

    register()
    register()
    assert merge_methods.get("dogerm") is METHOD


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_chunked_combine_is_bit_identical_to_the_whole_tensor_formula(dtype, monkeypatch):
    import dogerm_mergekit.method as method

    monkeypatch.setattr(method, "BLOCK", 7)  # many steps and a ragged last one
    generator = torch.Generator().manual_seed(3)
    rm = torch.randn(5, 11, generator=generator).to(dtype)
    domain = torch.randn(5, 11, generator=generator).to(dtype)
    base, delta = method.difference(rm, domain)
    for lam in (0.0, 0.3, 0.77, 1.0):
        assert torch.equal(method.combine(base, delta, lam), delta.mul(lam).add_(rm).to(rm.dtype))


def test_chunked_difference_equals_the_whole_tensor_subtraction(monkeypatch):
    import dogerm_mergekit.method as method

    monkeypatch.setattr(method, "BLOCK", 5)
    rm = torch.randn(3, 7).to(torch.bfloat16)
    domain = torch.randn(3, 7).to(torch.bfloat16)
    base, delta = method.difference(rm, domain)
    assert base is rm and torch.equal(delta, domain.to(torch.float32) - rm.to(torch.float32))
    assert method.difference(rm.double(), domain)[1].dtype == torch.float64


@pytest.mark.parametrize("dtype, out_dtype", [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.bfloat16),
                                              (torch.float32, torch.float16), (torch.float64, torch.float32)])
@pytest.mark.parametrize("domains", [1, 3])
def test_a_sweep_block_is_bit_identical_to_one_merge_per_lambda(dtype, out_dtype, domains, monkeypatch):
    import dogerm_mergekit.method as method

    monkeypatch.setattr(method, "BLOCK", 23)  # steps of 23 // rows elements, a ragged last one
    generator = torch.Generator().manual_seed(5)
    rm = torch.randn(7, 13, generator=generator).to(dtype)
    others = [torch.randn(7, 13, generator=generator).to(torch.bfloat16) for _ in range(domains)]
    vectors = [tuple(round(0.9 * ((k + i) % 4) / (3 * domains), 3) for i in range(domains)) for k in range(5)]
    block = method.interpolate_block(rm, others, vectors, torch.empty(5, rm.numel(), dtype=out_dtype))
    shared = method.combine_block(*method.differences(rm, others), vectors, torch.empty(5, rm.numel(), dtype=out_dtype))
    for row, row_shared, lams in zip(block, shared, vectors):
        # the per-lambda path, written out: products in order, then the RM, rounded once to out_dtype
        deltas = [o.to(method._compute_dtype(rm, others)) - rm for o in others]
        expected = deltas[0] * lams[0]
        for delta, lam in zip(deltas[1:], lams[1:]):
            expected = expected + delta * lam
        expected = (expected + rm).to(out_dtype).reshape(-1)
        assert torch.equal(row, expected) and torch.equal(row_shared, expected)
        assert torch.equal(row, method.combine_all(*method.differences(rm, others), lams, out_dtype).reshape(-1))
