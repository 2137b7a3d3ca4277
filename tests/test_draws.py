"""dbn.draws: the same random numbers as torch.rand / torch.randn of the same shape, from the same generator."""

from __future__ import annotations

import pytest
import torch

from dbn.draws import normal, uniform


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_and_normal_draw_what_torch_rand_and_randn_draw_from_the_default_generator(dtype):
    like = torch.empty(7, 5, dtype=dtype)
    for ours, theirs in ((uniform, torch.rand), (normal, torch.randn)):
        torch.manual_seed(11)
        a = ours(like)
        torch.manual_seed(11)
        b = theirs(7, 5, dtype=dtype)
        assert a.dtype == dtype and torch.equal(a, b)


def test_uniform_with_a_generator_and_a_dtype_and_a_strided_template():
    like = torch.empty(6, 4, 3, dtype=torch.bfloat16)[:, :, 0]  # not contiguous, bfloat16: draws in float32
    torch.manual_seed(2)
    a = uniform(like, dtype=torch.float32)
    torch.manual_seed(2)
    b = torch.rand(6, 4)
    assert a.dtype == torch.float32 and a.is_contiguous() and torch.equal(a, b)
    g, h = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(uniform(like, g, torch.float32), torch.rand(6, 4, generator=h), rtol=0, atol=0)
    torch.testing.assert_close(normal(like.float(), g), torch.randn(6, 4, generator=h), rtol=0, atol=0)
