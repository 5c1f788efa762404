// recaudit's panel matmul for decode steps: y = x W^T (+ bias) (+ residual), fp32, AVX2 + FMA.
//
// W [n, k] is packed once into panels of 16 output features, each panel k x 16 (panel-major).
// A call packs x [m, k] into blocks of up to 6 rows, k x rows (row-major within a k step), and
// runs a 6 x 16 register tile over every (block, panel): per output element
//
//     acc = 0;  for kk = 0 .. k-1:  acc = fma(x[i, kk], W[j, kk], acc);
//     y[i, j] = residual[i, j] + (acc + bias[j])
//
// in that order, whatever the block holds, the row count m, the thread count or the panel's
// thread: the same operations on the same values, so a row's bits never depend on its batch
// (still checked at load, see heights.py). Panels are split between OpenMP threads; each
// panel's weights stream from memory once per call and are re-read from cache for the other
// row blocks.
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int NR = 16;  // output features per panel
constexpr int MR = 6;   // rows per register tile
constexpr long PREFETCH = 256;  // floats ahead in the panel (16 k steps)

#define TILE_ROW(r)                                                  \
  if constexpr (R > r) {                                             \
    b = _mm256_broadcast_ss(xp + r);                                 \
    c##r##0 = _mm256_fmadd_ps(b, w0, c##r##0);                       \
    c##r##1 = _mm256_fmadd_ps(b, w1, c##r##1);                       \
  }

#define STORE_ROW(r)                                                 \
  if constexpr (R > r) store(c##r##0, c##r##1, y + r * ldy,          \
                             res ? res + r * ldy : nullptr, bias, cols);

inline void store(__m256 lo, __m256 hi, float* y, const float* res, const float* bias,
                  int cols) {
  if (bias) {
    lo = _mm256_add_ps(lo, _mm256_loadu_ps(bias));
    hi = _mm256_add_ps(hi, _mm256_loadu_ps(bias + 8));
  }
  alignas(32) float out[NR];
  _mm256_store_ps(out, lo);
  _mm256_store_ps(out + 8, hi);
  for (int j = 0; j < cols; ++j) y[j] = res ? res[j] + out[j] : out[j];
}

// R rows (1..6) of packed x (k x R) times one panel (k x 16); cols <= 16 outputs kept.
template <int R>
void tile(const float* __restrict xp, const float* __restrict p, long k, float* y, long ldy,
          const float* res, const float* bias, int cols) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
         c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (long kk = 0; kk < k; ++kk) {
    _mm_prefetch(reinterpret_cast<const char*>(p + PREFETCH), _MM_HINT_T0);
    const __m256 w0 = _mm256_loadu_ps(p), w1 = _mm256_loadu_ps(p + 8);
    __m256 b;
    TILE_ROW(0) TILE_ROW(1) TILE_ROW(2) TILE_ROW(3) TILE_ROW(4) TILE_ROW(5)
    p += NR;
    xp += R;
  }
  STORE_ROW(0) STORE_ROW(1) STORE_ROW(2) STORE_ROW(3) STORE_ROW(4) STORE_ROW(5)
}

void run_tile(int rows, const float* xp, const float* p, long k, float* y, long ldy,
              const float* res, const float* bias, int cols) {
  switch (rows) {
    case 6: tile<6>(xp, p, k, y, ldy, res, bias, cols); break;
    case 5: tile<5>(xp, p, k, y, ldy, res, bias, cols); break;
    case 4: tile<4>(xp, p, k, y, ldy, res, bias, cols); break;
    case 3: tile<3>(xp, p, k, y, ldy, res, bias, cols); break;
    case 2: tile<2>(xp, p, k, y, ldy, res, bias, cols); break;
    default: tile<1>(xp, p, k, y, ldy, res, bias, cols); break;
  }
}

}  // namespace

extern "C" {

// Floats a packed copy of an [n, k] weight takes.
long recaudit_panel_size(long n, long k) { return (n + NR - 1) / NR * NR * k; }

// Pack W [n, k] (row-major) into panels; the last panel's missing features are zeros.
void recaudit_panel_pack(const float* w, long n, long k, float* out) {
  const long panels = (n + NR - 1) / NR;
#pragma omp parallel for schedule(static)
  for (long p = 0; p < panels; ++p)
    for (long kk = 0; kk < k; ++kk)
      for (int j = 0; j < NR; ++j) {
        const long row = p * NR + j;
        out[(p * k + kk) * NR + j] = row < n ? w[row * k + kk] : 0.f;
      }
}

// y [m, n] = residual + (x [m, k] W^T + bias); bias and residual may be null. Returns 0, or
// 1 when the scratch for packed x could not be allocated.
int recaudit_panel_linear(const float* x, long m, long k, const float* panels, long n,
                          const float* bias, const float* res, float* y, int threads) {
  const long blocks = (m + MR - 1) / MR;
  float* xp = static_cast<float*>(malloc(sizeof(float) * blocks * MR * k));
  if (!xp) return 1;
  for (long b = 0; b < blocks; ++b) {
    const long rows = m - b * MR < MR ? m - b * MR : MR;
    float* dst = xp + b * MR * k;
    for (long r = 0; r < rows; ++r)
      for (long kk = 0; kk < k; ++kk) dst[kk * rows + r] = x[(b * MR + r) * k + kk];
  }
  const long count = (n + NR - 1) / NR;
  alignas(32) float bias_pad[NR];
#pragma omp parallel for schedule(static) num_threads(threads) firstprivate(bias_pad)
  for (long p = 0; p < count; ++p) {
    const int cols = n - p * NR < NR ? static_cast<int>(n - p * NR) : NR;
    const float* pb = nullptr;
    if (bias) {
      if (cols == NR) {
        pb = bias + p * NR;
      } else {
        memset(bias_pad, 0, sizeof(bias_pad));
        memcpy(bias_pad, bias + p * NR, sizeof(float) * cols);
        pb = bias_pad;
      }
    }
    const float* panel = panels + p * k * NR;
    for (long b = 0; b < blocks; ++b) {
      const long rows = m - b * MR < MR ? m - b * MR : MR;
      const long at = b * MR * n + p * NR;
      run_tile(static_cast<int>(rows), xp + b * MR * k, panel, k, y + at, n,
               res ? res + at : nullptr, pb, cols);
    }
  }
  free(xp);
  return 0;
}

}  // extern "C"
