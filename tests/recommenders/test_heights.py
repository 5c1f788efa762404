"""oneDNN decode heights (recaudit.recommenders.hf.heights): verified equal, or refused.

The panel kernel, tried first where it builds, is kept out of these tests (``oneDNN_only``)
and checked in tests/recommenders/test_panel_gemm.py.
"""

import pytest

from recaudit.recommenders.hf import heights as H
from recaudit.recommenders.hf import panel_gemm


@pytest.fixture(autouse=True)
def oneDNN_only(monkeypatch):
    monkeypatch.setattr(panel_gemm, "panel_kernel", lambda: (None, "off in this test"))


def _linears():
    import torch

    torch.manual_seed(0)
    return [torch.nn.Linear(24, 40), torch.nn.Linear(40, 24, bias=False),
            torch.nn.Linear(24, 40)]  # a repeated shape is checked once


def test_describe_names_the_heights_compactly():
    assert H.Heights(H.DECODE_HEIGHTS).describe() == "2-16, 24-128 by 8"
    assert H.Heights((2, 3, 4, 5, 9, 24, 40)).describe() == "2, 3, 4, 5, 9, 24, 40"
    assert H.Heights((2, 3, 4)).padded(1) == 2 and H.Heights((2, 8)).padded(3) == 8


def test_every_kept_height_reproduces_a_row_alone_bit_for_bit():
    import torch

    lins = _linears()
    found = H.verify_heights(lins)
    if found is None:  # this CPU's oneDNN rounds row counts differently: tiles serve instead
        pytest.skip("oneDNN does not keep rows equal across heights on this CPU")
    assert 2 in found.heights and set(found.heights) <= set(H.DECODE_HEIGHTS)
    lin = lins[0]
    x = torch.randn(300, 24)  # beyond the largest height: chunks of it
    with torch.inference_mode():
        alone = torch.cat([found.linear(x[i:i + 1], lin.weight, lin.bias) for i in range(300)])
        for m in (1, 2, 3, 7, 16, 17, 40, 129, 300):
            assert torch.equal(found.linear(x[:m], lin.weight, lin.bias), alone[:m]), m
        # and the value is the linear map's (to float rounding)
        assert torch.allclose(alone, torch.nn.functional.linear(x, lin.weight, lin.bias),
                              atol=1e-5)


def test_a_kernel_whose_rows_depend_on_the_height_is_refused(monkeypatch):
    real = H._onednn_linear

    def height_dependent(x, w, b):
        return real(x, w, b) + 1e-6 * x.shape[0]

    monkeypatch.setattr(H, "_onednn_linear", height_dependent)
    assert H.verify_heights(_linears()) is None


def test_a_kernel_whose_rows_depend_on_companions_is_refused(monkeypatch):
    real = H._onednn_linear

    def companion_dependent(x, w, b):
        return real(x, w, b) + 1e-6 * x.abs().sum()

    monkeypatch.setattr(H, "_onednn_linear", companion_dependent)
    assert H.verify_heights(_linears()) is None


def test_only_some_heights_failing_keeps_the_others(monkeypatch):
    real = H._onednn_linear

    def odd_heights_differ(x, w, b):
        y = real(x, w, b)
        return y + 1e-6 if x.shape[0] in (5, 7) else y

    monkeypatch.setattr(H, "_onednn_linear", odd_heights_differ)
    found = H.verify_heights(_linears())
    if found is None:
        pytest.skip("oneDNN does not keep rows equal across heights on this CPU")
    assert 5 not in found.heights and 7 not in found.heights and 6 in found.heights
    assert found.padded(5) == 6


def test_weights_oneDNN_cannot_serve_are_refused():
    import torch

    lin = torch.nn.Linear(8, 8).to(torch.float64)
    assert not H.onednn_available(lin.weight)
    assert H.verify_heights([lin]) is None


def test_reordered_weights_are_attached_and_a_refused_reorder_falls_back_to_plain(monkeypatch):
    import torch

    lins = _linears()
    packed = H.verify_heights(lins, pack=True)
    if packed is None:
        pytest.skip("oneDNN does not keep rows equal across heights on this CPU")
    assert packed.packed and all(H.decode_weight(lin) is not lin.weight for lin in lins)
    x = torch.randn(5, 24)
    with torch.inference_mode():
        assert torch.allclose(packed.linear(x, H.decode_weight(lins[0]), lins[0].bias),
                              lins[0](x), atol=1e-5)

    def refuse(weight):
        raise RuntimeError("reorder: this dtype needs avx512bw on this CPU")

    fresh = _linears()
    monkeypatch.setattr(H, "_pack", refuse)
    plain = H.verify_heights(fresh, pack=True)
    assert plain is not None and not plain.packed
    assert all(H.decode_weight(lin) is lin.weight for lin in fresh)


def test_the_fused_residual_add_is_used_only_where_it_equals_the_two_calls(monkeypatch):
    import torch

    lins = _linears()
    found = H.verify_heights(lins)
    if found is None:
        pytest.skip("oneDNN does not keep rows equal across heights on this CPU")
    lin = lins[0]
    x, r = torch.randn(300, 24), torch.randn(300, 40)
    with torch.inference_mode():
        for m in (1, 3, 16, 17, 129, 300):
            separate = found.linear_add(x[:m], lin.weight, lin.bias, r[:m], fused=False)
            assert torch.equal(separate, r[:m] + found.linear(x[:m], lin.weight, lin.bias))
            if H.fused_add_is_exact(lins, found):  # then one call gives the same bits
                fused = found.linear_add(x[:m], lin.weight, lin.bias, r[:m], fused=True)
                assert torch.equal(fused, separate), m
    real = H._onednn_linear_add

    def rounding_differently(x, residual, weight, bias):  # e.g. an FMA into the residual
        return real(x, residual, weight, bias) + 1e-7 * residual

    monkeypatch.setattr(H, "_onednn_linear_add", rounding_differently)
    assert not H.fused_add_is_exact(lins, found)
