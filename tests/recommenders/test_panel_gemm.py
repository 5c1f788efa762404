"""The panel matmul (recaudit.recommenders.hf.panel_gemm) and its place among the heights."""

import pytest

from recaudit.recommenders.hf import heights as H
from recaudit.recommenders.hf import panel_gemm as P


@pytest.fixture(scope="module")
def kernel():
    found, why = P.panel_kernel()
    if found is None:
        pytest.skip(f"panel kernel not available here: {why}")
    return found


def _float64_linear(x, w, b=None, r=None):
    y = x.double() @ w.double().T
    if b is not None:
        y = y + b.double()
    if r is not None:
        y = y + r.double()
    return y


@pytest.mark.parametrize("n,k", [(16, 8), (40, 24), (33, 7), (1, 5), (960, 576)])
def test_it_computes_the_linear_map(kernel, n, k):
    import torch

    gen = torch.Generator().manual_seed(n * 1000 + k)
    w = torch.randn(n, k, generator=gen)
    b = torch.randn(n, generator=gen)
    panels = kernel.pack(w)
    for m in (1, 2, 5, 6, 7, 13, 64):
        x = torch.randn(m, k, generator=gen)
        r = torch.randn(m, n, generator=gen)
        tol = 1e-5 * k ** 0.5 * 4
        assert torch.allclose(kernel.linear(x, panels, None).double(), _float64_linear(x, w),
                              atol=tol), (m, n, k)
        assert torch.allclose(kernel.linear(x, panels, b).double(), _float64_linear(x, w, b),
                              atol=tol)
        assert torch.allclose(kernel.linear_add(x, r, panels, b).double(),
                              _float64_linear(x, w, b, r), atol=tol)


def test_the_fused_add_is_the_add_of_the_matmul_bit_for_bit(kernel):
    import torch

    gen = torch.Generator().manual_seed(3)
    w, b = torch.randn(40, 24, generator=gen), torch.randn(40, generator=gen)
    x, r = torch.randn(9, 24, generator=gen), torch.randn(9, 40, generator=gen)
    panels = kernel.pack(w)
    assert torch.equal(kernel.linear_add(x, r, panels, b), r + kernel.linear(x, panels, b))


def test_a_rows_bits_do_not_depend_on_its_batch_or_the_thread_count(kernel):
    import torch

    gen = torch.Generator().manual_seed(4)
    w, b = torch.randn(200, 96, generator=gen), torch.randn(200, generator=gen)
    panels = kernel.pack(w)
    x = torch.randn(70, 96, generator=gen)
    alone = torch.cat([kernel.linear(x[i:i + 1], panels, b) for i in range(70)])
    threads = torch.get_num_threads()
    try:
        for t in {1, 2, threads}:
            torch.set_num_threads(t)
            for m in (2, 5, 6, 7, 12, 17, 70):
                assert torch.equal(kernel.linear(x[:m], panels, b), alone[:m]), (t, m)
            perm = torch.randperm(70, generator=gen)
            assert torch.equal(kernel.linear(x[perm], panels, b), alone[perm])
    finally:
        torch.set_num_threads(threads)


def test_verify_heights_serves_fp32_on_the_panel_kernel_from_one_row(kernel):
    import torch

    torch.manual_seed(0)
    lins = [torch.nn.Linear(24, 40), torch.nn.Linear(40, 24, bias=False)]
    found = H.verify_heights(lins, pack=True)
    assert found is not None and found.tag == "panels" and found.backend is kernel
    assert found.heights[0] == 1 and found.padded(1) == 1
    assert found.describe() == "1-16, 24-128 by 8"
    lin = lins[0]
    x = torch.randn(300, 24)
    with torch.inference_mode():
        got = found.linear(x, H.decode_weight(lin), lin.bias)
        alone = torch.cat([found.linear(x[i:i + 1], H.decode_weight(lin), lin.bias)
                           for i in range(300)])
    assert torch.equal(got, alone)
    assert torch.allclose(got, lin(x).detach(), atol=1e-5)
    assert H.fused_add_is_exact(lins, found)


def test_without_room_for_packed_copies_the_panel_kernel_is_passed_over_with_the_reason(kernel):
    import torch

    torch.manual_seed(0)
    found = H.verify_heights([torch.nn.Linear(24, 40)], pack=False)
    if found is None:
        pytest.skip("oneDNN does not keep rows equal across heights on this CPU")
    assert found.tag == "onednn" and "no memory for its packed copy" in found.note


def test_a_panel_kernel_failing_its_check_leaves_onednn(kernel, monkeypatch):
    import torch

    class Drifting:  # a kernel whose rows depend on the height
        name, tag = "drifting", "drift"

        def pack(self, weight):
            return kernel.pack(weight)

        def linear(self, x, panels, bias):
            return kernel.linear(x, panels, bias) + 1e-6 * x.shape[0]

    monkeypatch.setattr(P, "panel_kernel", lambda: (Drifting(), ""))
    torch.manual_seed(0)
    found = H.verify_heights([torch.nn.Linear(24, 40)], pack=True)
    if found is None:
        pytest.skip("oneDNN does not keep rows equal across heights on this CPU")
    assert found.tag.startswith("onednn")


def test_no_compiler_or_another_cpu_is_a_reason_not_an_error(monkeypatch):
    monkeypatch.setattr(P, "_LOADED", {})
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    if P._cpu_reason():
        found, why = P.panel_kernel()
        assert found is None and why == P._cpu_reason()
        return
    found, why = P.panel_kernel()
    assert found is None and why == "no C++ compiler (set CXX)"


def test_a_failing_build_is_a_one_line_reason(monkeypatch, tmp_path):
    script = tmp_path / "cxx"
    script.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo fake 1.0; exit 0; }\n"
                      "echo 'panel_gemm.cpp:1: error: no AVX2 here' >&2\necho more >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr(P, "_LOADED", {})
    monkeypatch.setenv("CXX", str(script))
    monkeypatch.setenv("RECAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    if P._cpu_reason():
        pytest.skip(P._cpu_reason())
    found, why = P.panel_kernel()
    assert found is None
    assert why == "could not build it: panel_gemm.cpp:1: error: no AVX2 here"
    assert not list((tmp_path / "cache" / "kernels").iterdir())  # no half-written library


def test_wrong_input_is_refused_with_the_shapes(kernel):
    import torch

    panels = kernel.pack(torch.randn(16, 8))
    with pytest.raises(ValueError, match=r"\(3, 9\) torch.float32 rows on a 16 x 8"):
        kernel.linear(torch.randn(3, 9), panels, None)
