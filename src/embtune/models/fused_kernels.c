/* Fused CPU kernels for the fast encoder's training step (see fused.py, which compiles and calls them).

   Each function does in one pass what eager torch does in several separate passes (each with its own
   dispatch, allocation and memory traffic):

   - residual_ln_fwd / residual_ln_bwd: y = LayerNorm(dropout(h + hb) + x), and its gradients for h, hb (the
     bias of the matmul that made h), x, gamma and beta;
   - softmax_dropout_fwd / softmax_dropout_bwd: out = dropout(softmax(scale * s + bias)) over the last axis of
     attention scores, and the gradient for s;
   - split_heads / merge_heads (and their gradients): the fused qkv token rows to contiguous (rows * heads, T,
     d) heads of a group's grid, and the attention output back to token rows;
   - sum_squares / scale_all: gradient clipping's norm and scaling over all parameter tensors at once.

   Dropout masks are not stored: element (row, column) is kept when a hash of (seed, row, column) is at least
   levels << 16 (the drop probability is levels / 65536), so forward and backward draw the same mask from the
   seed. Accumulation is float32; bf16 values are rounded to nearest even. Rows are split over OpenMP threads (the
   runtime torch itself loaded). */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

typedef uint16_t bf16;

static inline float from_bf16(bf16 v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline bf16 to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* The dropout key of row r: every element (r, j) of that row is kept when fmix32(key ^ j * golden) >= levels
   << 16 (levels / 65536 = the drop probability). One 32-bit hash per element, branch-free, so the loops
   vectorize. */
static inline uint32_t row_key(uint64_t seed, int64_t r) {
    return fmix32((uint32_t)seed ^ fmix32((uint32_t)(seed >> 32) ^ (uint32_t)r ^ fmix32((uint32_t)((uint64_t)r >> 32))));
}

static inline float keep(uint32_t key, int64_t j, uint32_t threshold) {
    return fmix32(key ^ ((uint32_t)j * 0x9e3779b9u)) >= threshold ? 1.0f : 0.0f;
}

/* exp(x) for x <= 0 (softmax after the max is subtracted): 2^n * 2^f with a degree-6 polynomial for 2^f,
   f in [-0.5, 0.5]; relative error ~2e-7. Very negative x (masked keys) give exactly 0. */
static inline float exp_neg(float x) {
    if (x < -87.0f) return 0.0f;
    float t = x * 1.44269504088896341f;
    float n = rintf(t);
    float f = t - n;
    float p = 1.5403530393381609e-4f;
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
    p = p * f + 5.5504108664821580e-2f;
    p = p * f + 2.4022650695910071e-1f;
    p = p * f + 6.9314718055994531e-1f;
    p = p * f + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

#define INLINE static inline __attribute__((always_inline))

INLINE float load(const void *ptr, const int is_bf16, int64_t j) {
    return is_bf16 ? from_bf16(((const bf16 *)ptr)[j]) : ((const float *)ptr)[j];
}

INLINE void store(void *ptr, const int is_bf16, int64_t j, float v) {
    if (is_bf16) ((bf16 *)ptr)[j] = to_bf16(v);
    else ((float *)ptr)[j] = v;
}

/* out[j] = the sum over `parts` partial rows (part t at work + t * stride), added in order: the per-thread
   partial sums of a reduction over rows, so the result depends only on the thread count. */
static void sum_partials(const float *work, int parts, int64_t stride, int64_t width, float *out) {
    for (int64_t j = 0; j < width; j++) {
        float sum = 0.0f;
        for (int t = 0; t < parts; t++) sum += work[(int64_t)t * stride + j];
        out[j] = sum;
    }
}

/* One row of residual_ln_fwd; `is_bf16` is a constant at each call site, so each dtype gets its own loops. */
INLINE void ln_fwd_row(const void *h, const int is_bf16, const float *hb, const float *x, const float *gamma,
                       const float *beta, float *y, float *s, float *mean, float *rstd, int64_t r, int64_t H,
                       float eps, uint32_t key, uint32_t threshold, float scale) {
    const int64_t o = r * H;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < H; j++) {
        float v = load(h, is_bf16, o + j) + (hb ? hb[j] : 0.0f);
        if (threshold) v *= keep(key, j, threshold) * scale;
        v += x[o + j];
        s[o + j] = v;
        sum += v;
    }
    const float m = sum / (float)H;
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int64_t j = 0; j < H; j++) {
        const float d = s[o + j] - m;
        var += d * d;
    }
    const float rs = 1.0f / sqrtf(var / (float)H + eps);
    mean[r] = m;
    rstd[r] = rs;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) y[o + j] = (s[o + j] - m) * rs * gamma[j] + beta[j];
}

/* The attention output's and the feed-forward output's bias adds ride along (hb), so their matmuls run
   without bias. s = dropout(h + hb) + x (hb: h's bias, or NULL); y = (s - mean) * rstd * gamma + beta, per row of H.
   Saves s, mean, rstd. */
void residual_ln_fwd(const void *h, int h_bf16, const float *hb, const float *x, const float *gamma, const float *beta,
                     float *y, float *s, float *mean, float *rstd, int64_t rows, int64_t H, float eps,
                     uint64_t seed, uint32_t levels, float scale, int threads) {
    const uint32_t threshold = levels << 16;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const uint32_t key = row_key(seed, r);
        if (h_bf16) ln_fwd_row(h, 1, hb, x, gamma, beta, y, s, mean, rstd, r, H, eps, key, threshold, scale);
        else ln_fwd_row(h, 0, hb, x, gamma, beta, y, s, mean, rstd, r, H, eps, key, threshold, scale);
    }
}

INLINE void ln_bwd_row(const float *dy, const float *s, const float *mean, const float *rstd, const float *gamma,
                       float *dx, void *dh, const int is_bf16, float *dg, float *db, float *dhb, int64_t r,
                       int64_t H, uint32_t key, uint32_t threshold, float scale) {
    const int64_t o = r * H;
    const float m = mean[r], rs = rstd[r];
    float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
    for (int64_t j = 0; j < H; j++) {
        const float xh = (s[o + j] - m) * rs;
        const float g = dy[o + j] * gamma[j];
        a += g;
        b += g * xh;
        dg[j] += dy[o + j] * xh;
        db[j] += dy[o + j];
    }
    a /= (float)H;
    b /= (float)H;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        const float xh = (s[o + j] - m) * rs;
        const float d = rs * (dy[o + j] * gamma[j] - a - xh * b);
        if (dx) dx[o + j] = d;
        float dv = d;
        if (threshold) dv *= keep(key, j, threshold) * scale;
        dhb[j] += dv;
        store(dh, is_bf16, o + j, dv);
    }
}

/* Gradients of residual_ln_fwd: dx = ds (float32), dh = dropout'(ds) in h's dtype, and dgamma, dbeta and
   dhb (h's bias, when not NULL) summed over rows (partials per thread in `work`, 3 * threads * H floats, then
   added in thread order). */
void residual_ln_bwd(const float *dy, const float *s, const float *mean, const float *rstd, const float *gamma,
                     float *dx, void *dh, int h_bf16, float *dgamma, float *dbeta, float *dhbias, float *work,
                     int64_t rows, int64_t H, uint64_t seed, uint32_t levels, float scale, int threads) {
    const uint32_t threshold = levels << 16;
    memset(work, 0, sizeof(float) * 3 * (size_t)threads * (size_t)H);
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        float *dg = work + (int64_t)t * 3 * H;
        float *db = dg + H;
        float *dhb = db + H;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const uint32_t key = row_key(seed, r);
            if (h_bf16) ln_bwd_row(dy, s, mean, rstd, gamma, dx, dh, 1, dg, db, dhb, r, H, key, threshold, scale);
            else ln_bwd_row(dy, s, mean, rstd, gamma, dx, dh, 0, dg, db, dhb, r, H, key, threshold, scale);
        }
    }
    if (dgamma) sum_partials(work, threads, 3 * H, H, dgamma);
    if (dbeta) sum_partials(work + H, threads, 3 * H, H, dbeta);
    if (dhbias) sum_partials(work + 2 * H, threads, 3 * H, H, dhbias);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && !defined(EMBTUNE_GENERIC)
#include <immintrin.h>

/* The softmax rows with AVX-512 intrinsics: attention rows are short (T = 64 in packed rows), and the
   auto-vectorized loops spent most of their time in per-row horizontal sums done lane by lane. Same math as
   the generic rows below (exp_neg, keep, load, store, rounding), 16 lanes at a time with masked tails. */

static inline __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

static inline __m512 v_exp_neg(__m512 x) {
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    const __m512 t = _mm512_mul_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(1.44269504088896341f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.5403530393381609e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

static inline __m512 v_load(const void *ptr, const int is_bf16, int64_t j, __mmask16 k) {
    if (is_bf16) {
        const __m256i h = _mm256_maskz_loadu_epi16(k, (const bf16 *)ptr + j);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(k, (const float *)ptr + j);
}

static inline void v_store(void *ptr, const int is_bf16, int64_t j, __m512 v, __mmask16 k) {
    if (is_bf16) {  /* round to nearest even; NaN stays NaN */
        const __m512i u = _mm512_castps_si512(v);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
        _mm256_mask_storeu_epi16((bf16 *)ptr + j, k, _mm512_cvtepi32_epi16(r));
    } else {
        _mm512_mask_storeu_ps((float *)ptr + j, k, v);
    }
}

static inline __m512i v_fmix32(__m512i h) {
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32((int)0x85ebca6bu));
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 13));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32((int)0xc2b2ae35u));
    return _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
}

/* Lanes j..j+15 of the row with this key that dropout keeps (as keep()). */
static inline __mmask16 v_keep(uint32_t key, int64_t j, uint32_t threshold) {
    const __m512i lanes = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)j),
                                           _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i h = v_fmix32(_mm512_xor_si512(_mm512_set1_epi32((int)key),
                                                _mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)0x9e3779b9u))));
    return _mm512_cmp_epu32_mask(h, _mm512_set1_epi32((int)threshold), _MM_CMPINT_NLT);
}

INLINE void sm_fwd_row(const void *scores, const void *bias, const int is_bf16, void *p, void *out, float *z,
                       int64_t o, int64_t bo, int64_t T, float scale, uint32_t key, uint32_t threshold,
                       float dscale) {
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < T; j += 16) {
        const __mmask16 k = tail_mask(T - j);
        __m512 v = _mm512_mul_ps(v_load(scores, is_bf16, o + j, k), vscale);
        if (bias) v = _mm512_add_ps(v, v_load(bias, is_bf16, bo + j, k));
        _mm512_mask_storeu_ps(z + j, k, v);
        vmax = _mm512_mask_max_ps(vmax, k, vmax, v);
    }
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t j = 0; j < T; j += 16) {
        const __mmask16 k = tail_mask(T - j);
        const __m512 e = _mm512_maskz_mov_ps(k, v_exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, z + j), mx)));
        _mm512_mask_storeu_ps(z + j, k, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    const __m512 vd = _mm512_set1_ps(dscale);
    for (int64_t j = 0; j < T; j += 16) {
        const __mmask16 k = tail_mask(T - j);
        const __m512 pv = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, z + j), inv);
        v_store(p, is_bf16, o + j, pv, k);
        if (threshold) v_store(out, is_bf16, o + j, _mm512_maskz_mul_ps(v_keep(key, j, threshold), pv, vd), k);
        else v_store(out, is_bf16, o + j, pv, k);
    }
}

INLINE void sm_bwd_row(const void *dout, const void *p, void *ds, const int is_bf16, float *dp, int64_t o,
                       int64_t T, float scale, uint32_t key, uint32_t threshold, float dscale) {
    const __m512 vd = _mm512_set1_ps(dscale);
    __m512 vc = _mm512_setzero_ps();
    for (int64_t j = 0; j < T; j += 16) {
        const __mmask16 k = tail_mask(T - j);
        __m512 v = v_load(dout, is_bf16, o + j, k);
        if (threshold) v = _mm512_maskz_mul_ps(v_keep(key, j, threshold), v, vd);
        _mm512_mask_storeu_ps(dp + j, k, v);
        vc = _mm512_fmadd_ps(v, v_load(p, is_bf16, o + j, k), vc);
    }
    const __m512 c = _mm512_set1_ps(_mm512_reduce_add_ps(vc));
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int64_t j = 0; j < T; j += 16) {
        const __mmask16 k = tail_mask(T - j);
        const __m512 pv = v_load(p, is_bf16, o + j, k);
        const __m512 g = _mm512_mul_ps(_mm512_mul_ps(vscale, pv), _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dp + j), c));
        v_store(ds, is_bf16, o + j, g, k);
    }
}
#else
INLINE void sm_fwd_row(const void *scores, const void *bias, const int is_bf16, void *p, void *out, float *z,
                       int64_t o, int64_t bo, int64_t T, float scale, uint32_t key, uint32_t threshold,
                       float dscale) {
    float mx = -INFINITY;
    if (bias) {
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < T; j++) {
            const float v = load(scores, is_bf16, o + j) * scale + load(bias, is_bf16, bo + j);
            z[j] = v;
            mx = v > mx ? v : mx;
        }
    } else {
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < T; j++) {
            const float v = load(scores, is_bf16, o + j) * scale;
            z[j] = v;
            mx = v > mx ? v : mx;
        }
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < T; j++) {
        z[j] = exp_neg(z[j] - mx);
        sum += z[j];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < T; j++) {
        const float pv = z[j] * inv;
        store(p, is_bf16, o + j, pv);
        float dv = pv;
        if (threshold) dv *= keep(key, j, threshold) * dscale;
        store(out, is_bf16, o + j, dv);
    }
}

#endif

/* Scores (groups, heads, q, T) in one dtype (float32 or bf16); bias (groups, 1, bias_q, T) in the same dtype
   or NULL, with bias_q 1 (one key mask per group) or q (one per query). Writes p = softmax(scale * s + bias)
   (saved for backward) and out = dropout(p), both in the scores' dtype. */
void softmax_dropout_fwd(const void *scores, const void *bias, int is_bf16, void *p, void *out,
                         int64_t groups, int64_t heads, int64_t q, int64_t T, int64_t bias_q, float scale,
                         uint64_t seed, uint32_t levels, float dscale, int threads) {
    const int64_t rows = groups * heads * q;
    const uint32_t threshold = levels << 16;
#pragma omp parallel num_threads(threads)
    {
        float z[T];
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t g = r / (heads * q), qi = r % q;
            const int64_t bo = (g * bias_q + (bias_q == 1 ? 0 : qi)) * T;
            const uint32_t key = row_key(seed, r);
            if (is_bf16) sm_fwd_row(scores, bias, 1, p, out, z, r * T, bo, T, scale, key, threshold, dscale);
            else sm_fwd_row(scores, bias, 0, p, out, z, r * T, bo, T, scale, key, threshold, dscale);
        }
    }
}

#if !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)) || defined(EMBTUNE_GENERIC)
INLINE void sm_bwd_row(const void *dout, const void *p, void *ds, const int is_bf16, float *dp, int64_t o,
                       int64_t T, float scale, uint32_t key, uint32_t threshold, float dscale) {
    float c = 0.0f;
#pragma omp simd reduction(+ : c)
    for (int64_t j = 0; j < T; j++) {
        float v = load(dout, is_bf16, o + j);
        if (threshold) v *= keep(key, j, threshold) * dscale;
        dp[j] = v;
        c += v * load(p, is_bf16, o + j);
    }
#pragma omp simd
    for (int64_t j = 0; j < T; j++) store(ds, is_bf16, o + j, scale * load(p, is_bf16, o + j) * (dp[j] - c));
}

#endif

/* ds = scale * p * (dp - sum(dp * p)) with dp = dropout'(dout); all in the scores' dtype. */
void softmax_dropout_bwd(const void *dout, const void *p, void *ds, int is_bf16, int64_t rows, int64_t T,
                         float scale, uint64_t seed, uint32_t levels, float dscale, int threads) {
    const uint32_t threshold = levels << 16;
#pragma omp parallel num_threads(threads)
    {
        float dp[T];
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const uint32_t key = row_key(seed, r);
            if (is_bf16) sm_bwd_row(dout, p, ds, 1, dp, r * T, T, scale, key, threshold, dscale);
            else sm_bwd_row(dout, p, ds, 0, dp, r * T, T, scale, key, threshold, dscale);
        }
    }
}


/* Gradient clipping over many tensors in one call: the sum of squares of all n float32 tensors (ptrs[i] with
   lens[i] values), and a scaling of all of them in place. Work is cut into chunks of CHUNK values spread
   over threads; each chunk's partial sum is kept and the partials are added in chunk order, so the result
   does not depend on the thread count or timing. */
#define CHUNK 16384

static int64_t chunk_count(const int64_t *lens, int64_t n) {
    int64_t chunks = 0;
    for (int64_t i = 0; i < n; i++) chunks += (lens[i] + CHUNK - 1) / CHUNK;
    return chunks;
}

/* (tensor, offset) of every chunk, written to `where` (2 * chunks int64s). */
static void chunk_table(const int64_t *lens, int64_t n, int64_t *where) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t off = 0; off < lens[i]; off += CHUNK) {
            where[2 * c] = i;
            where[2 * c + 1] = off;
            c++;
        }
}

/* The number of chunks: sum_squares and scale_all take `where` with 2 int64s and `partial` with 1 double each. */
int64_t grad_chunks(const int64_t *lens, int64_t n) { return chunk_count(lens, n); }

double sum_squares(float *const *ptrs, const int64_t *lens, int64_t n, int64_t *where, double *partial,
                   int threads) {
    const int64_t chunks = chunk_count(lens, n);
    chunk_table(lens, n, where);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        const float *x = ptrs[where[2 * c]] + where[2 * c + 1];
        const int64_t len = lens[where[2 * c]] - where[2 * c + 1] < CHUNK ? lens[where[2 * c]] - where[2 * c + 1] : CHUNK;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < len; j++) acc += x[j] * x[j];
        partial[c] = (double)acc;
    }
    double total = 0.0;
    for (int64_t c = 0; c < chunks; c++) total += partial[c];
    return total;
}

void scale_all(float *const *ptrs, const int64_t *lens, int64_t n, int64_t *where, float coef, int threads) {
    const int64_t chunks = chunk_count(lens, n);
    chunk_table(lens, n, where);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        float *x = ptrs[where[2 * c]] + where[2 * c + 1];
        const int64_t len = lens[where[2 * c]] - where[2 * c + 1] < CHUNK ? lens[where[2 * c]] - where[2 * c + 1] : CHUNK;
#pragma omp simd
        for (int64_t j = 0; j < len; j++) x[j] *= coef;
    }
}

/* Attention's layout changes, each one pass of d-value copies (instead of a gather, then a copy per q, k, v to
   make them contiguous, and the reverse in backward). A group's T-slot grid has `cells` = rows * T cells;
   cell c holds token grid_index[c] of the group (pad cells repeat a real token; NULL: cell c is token c),
   and token i sits in cell real_index[i] (NULL: cell i). H = heads * d; elem = 2 (bf16) or 4 (float32). */

/* A head's d values: 64-byte blocks the compiler inlines (d = 32 bf16 or 16 float32 and their multiples: every
   BERT-family head size), else memcpy (a call per run: split_heads of 960 tokens took 0.097 instead of 0.088 ms). */
static inline void copy_run(char *dst, const char *src, int64_t run) {
    if ((run & 63) == 0) {
        for (int64_t b = 0; b < run; b += 64) __builtin_memcpy(dst + b, src + b, 64);
    } else {
        memcpy(dst, src, (size_t)run);
    }
}

/* One head's d values plus their bias (float32), rounded to the values' dtype (elem 2: bf16, 4: float32). */
static inline void add_run(char *dst, const char *src, const float *bias, int64_t d, int64_t elem) {
    if (elem == 2) {
#pragma omp simd
        for (int64_t e = 0; e < d; e++) ((bf16 *)dst)[e] = to_bf16(from_bf16(((const bf16 *)src)[e]) + bias[e]);
    } else {
#pragma omp simd
        for (int64_t e = 0; e < d; e++) ((float *)dst)[e] = ((const float *)src)[e] + bias[e];
    }
}

/* x (tokens, 3H) (+ bias (3H) float32, or NULL: the qkv matmul's bias, so that matmul runs without one) ->
   q, k, v (rows * heads, T, d) */
void split_heads(const char *x, int64_t elem, const float *bias, const int64_t *grid_index, char *q, char *k,
                 char *v, int64_t cells, int64_t T, int64_t heads, int64_t d, int threads) {
    const int64_t H = heads * d, run = d * elem;
    char *const out[3] = {q, k, v};
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < cells; c++) {
        const int64_t token = grid_index ? grid_index[c] : c, r = c / T, pos = c % T;
        const char *src = x + token * 3 * H * elem;
        for (int64_t part = 0; part < 3; part++)
            for (int64_t h = 0; h < heads; h++) {
                char *dst = out[part] + ((r * heads + h) * T + pos) * run;
                const int64_t col = part * H + h * d;
                if (bias) add_run(dst, src + col * elem, bias + col, d, elem);
                else copy_run(dst, src + col * elem, run);
            }
    }
}

/* gradient of split_heads: each token's (3H) row from its real cell (pad cells feed nothing), and the bias
   gradient (when dbias is not NULL: the sum of those rows, float32 partials per thread in `work`, threads * 3H
   floats, added in thread order) */
void split_heads_bwd(const char *dq, const char *dk, const char *dv, int64_t elem, const int64_t *real_index,
                     char *dx, float *dbias, float *work, int64_t tokens, int64_t T, int64_t heads, int64_t d,
                     int threads) {
    const int64_t H = heads * d, run = d * elem;
    const char *const in[3] = {dq, dk, dv};
    if (dbias) memset(work, 0, sizeof(float) * (size_t)threads * 3 * (size_t)H);
#pragma omp parallel num_threads(threads)
    {
        float *acc = dbias ? work + (int64_t)omp_get_thread_num() * 3 * H : NULL;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < tokens; i++) {
            const int64_t c = real_index ? real_index[i] : i, r = c / T, pos = c % T;
            char *dst = dx + i * 3 * H * elem;
            for (int64_t part = 0; part < 3; part++)
                for (int64_t h = 0; h < heads; h++)
                    copy_run(dst + (part * H + h * d) * elem, in[part] + ((r * heads + h) * T + pos) * run, run);
            if (acc) {
                if (elem == 2) {
#pragma omp simd
                    for (int64_t j = 0; j < 3 * H; j++) acc[j] += from_bf16(((const bf16 *)dst)[j]);
                } else {
#pragma omp simd
                    for (int64_t j = 0; j < 3 * H; j++) acc[j] += ((const float *)dst)[j];
                }
            }
        }
    }
    if (dbias) sum_partials(work, threads, 3 * H, 3 * H, dbias);
}

/* out (rows * heads, T, d) -> y (tokens, H): each token's heads from its real cell */
void merge_heads(const char *out, int64_t elem, const int64_t *real_index, char *y, int64_t tokens, int64_t T,
                 int64_t heads, int64_t d, int threads) {
    const int64_t run = d * elem;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < tokens; i++) {
        const int64_t c = real_index ? real_index[i] : i, r = c / T, pos = c % T;
        for (int64_t h = 0; h < heads; h++)
            copy_run(y + (i * heads + h) * run, out + ((r * heads + h) * T + pos) * run, run);
    }
}

/* gradient of merge_heads: dy (tokens, H) -> dout (rows * heads, T, d), zeros in pad cells */
void merge_heads_bwd(const char *dy, int64_t elem, const int64_t *grid_index, const int64_t *real_index, char *dout,
                     int64_t cells, int64_t T, int64_t heads, int64_t d, int threads) {
    const int64_t run = d * elem;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < cells; c++) {
        const int64_t token = grid_index ? grid_index[c] : c, r = c / T, pos = c % T;
        const int real = !real_index || real_index[token] == c;
        for (int64_t h = 0; h < heads; h++) {
            char *dst = dout + ((r * heads + h) * T + pos) * run;
            if (real) copy_run(dst, dy + (token * heads + h) * run, run);
            else memset(dst, 0, (size_t)run);
        }
    }
}

/* ---- inference: attention inside each sequence of the token matrix (bf16 in and out) ----

   sequence_attention: for every segment (the rows start..start+len-1 of one sequence in the token
   matrix) and every head, out = softmax(scale * q k^T) v over that segment's tokens only, with q, k, v the
   head's columns of the fused (cells, 3H) qkv rows. A segment with len <= 0 marks -len rows to fill with zeros
   (rows that hold no sequence, e.g. spare rows). Scores, softmax and the value sums accumulate in float32; the
   probabilities stay float32 for the value sums (torch's bf16 attention rounds them to bf16); the output is bf16.
   torch's fused attention pays per (row, head) block of a padded grid and its block-diagonal mask; this
   computes each sequence's (len x len) scores only, with AVX512-BF16 dot products where the CPU has them. */

#define ATT_LMAX 256
#define ATT_DMAX 128

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512BF16__) && !defined(EMBTUNE_GENERIC)
#include <immintrin.h>
#define ATT_QB 4 /* queries per pass: four independent dot-product chains (one chain is latency-bound) */

int sequence_attention_native(void) { return 1; }

/* One (segment, head): q, k, v rows of length d at stride ld; L <= ATT_LMAX, d a multiple of 32 <= ATT_DMAX. */
static void att_segment_head(const bf16 *q, const bf16 *k, const bf16 *v, int64_t ld, void *o, int o_f32,
                             int64_t ldo, int L, int d, float scale, char *scratch) {
    const int LP = (L + 15) & ~15, pairs = d / 2, dv = d / 16, blocks = LP / 16;
    /* k transposed into pairs: kt[p * LP + j] = (k[j][2p], k[j][2p+1]), so 16 keys' scores are one bf16 dot
       product per pair of dimensions; v in float32 (16 dimensions per vector): the probabilities stay float32
       for the value sums (rounding them to bf16 cost 1.4e-5 of worst-case cosine to fp32 on STS-B) */
    uint32_t *kt = (uint32_t *)scratch;                              /* ATT_DMAX / 2 * ATT_LMAX */
    __m512 *vt = (__m512 *)(scratch + ATT_DMAX / 2 * ATT_LMAX * 4);   /* ATT_LMAX * ATT_DMAX / 16 */
    float probs[ATT_QB][ATT_LMAX] __attribute__((aligned(64)));
    for (int j = 0; j < L; j++) {
        const uint32_t *kr = (const uint32_t *)(k + j * ld);
        for (int p = 0; p < pairs; p++) kt[p * LP + j] = kr[p];
    }
    for (int j = L; j < LP; j++)
        for (int p = 0; p < pairs; p++) kt[p * LP + j] = 0;
    for (int j = 0; j < L; j++)
        for (int c = 0; c < dv; c++)
            vt[j * dv + c] = _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(v + j * ld + c * 16))), 16));
    const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
    for (int i0 = 0; i0 < L; i0 += ATT_QB) {
        const int nq = L - i0 < ATT_QB ? L - i0 : ATT_QB;
        __m512 s[ATT_QB][ATT_LMAX / 16];
        for (int b = 0; b < blocks; b++) {
            __m512 acc[ATT_QB];
            for (int t = 0; t < ATT_QB; t++) acc[t] = _mm512_setzero_ps();
            for (int p = 0; p < pairs; p++) {
                const __m512bh kv = (__m512bh)_mm512_load_si512(kt + p * LP + b * 16);
                for (int t = 0; t < ATT_QB; t++) {  /* a short last pass repeats query i0 (its result is dropped) */
                    const int i = i0 + (t < nq ? t : 0);
                    acc[t] = _mm512_dpbf16_ps(acc[t], (__m512bh)_mm512_set1_epi32(((const int *)(q + i * ld))[p]), kv);
                }
            }
            const __mmask16 live = tail_mask(L - b * 16);
            for (int t = 0; t < ATT_QB; t++) s[t][b] = _mm512_mask_mul_ps(ninf, live, acc[t], vscale);
        }
        __m512 out[ATT_QB][ATT_DMAX / 16];
        for (int t = 0; t < ATT_QB; t++) {
            __m512 mx = s[t][0];
            for (int b = 1; b < blocks; b++) mx = _mm512_max_ps(mx, s[t][b]);
            const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
            __m512 sum = _mm512_setzero_ps();
            for (int b = 0; b < blocks; b++) {
                s[t][b] = v_exp_neg(_mm512_sub_ps(s[t][b], vmx));
                sum = _mm512_add_ps(sum, s[t][b]);
            }
            const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
            for (int b = 0; b < blocks; b++) _mm512_store_ps(probs[t] + b * 16, _mm512_mul_ps(s[t][b], inv));
            for (int c = 0; c < dv; c++) out[t][c] = _mm512_setzero_ps();
        }
        for (int j = 0; j < L; j++) {
            for (int c = 0; c < dv; c++) {
                const __m512 vv = vt[j * dv + c];
                for (int t = 0; t < ATT_QB; t++)
                    out[t][c] = _mm512_fmadd_ps(_mm512_set1_ps(probs[t][j]), vv, out[t][c]);
            }
        }
        for (int t = 0; t < nq; t++)
            for (int c = 0; c < dv; c++) {
                const int64_t at = (i0 + t) * ldo + c * 16;
                if (o_f32) _mm512_storeu_ps((float *)o + at, out[t][c]);
                else _mm256_storeu_si256((__m256i *)((bf16 *)o + at), (__m256i)_mm512_cvtneps_pbh(out[t][c]));
            }
    }
}

#else
int sequence_attention_native(void) { return 0; }

/* The same math with scalar loops (any d <= ATT_DMAX): a portable reference, slower than torch's kernel. */
static void att_segment_head(const bf16 *q, const bf16 *k, const bf16 *v, int64_t ld, void *o, int o_f32,
                             int64_t ldo, int L, int d, float scale, char *scratch) {
    (void)scratch;
    float s[ATT_LMAX], acc[ATT_DMAX];
    for (int i = 0; i < L; i++) {
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j < L; j++) {
            float dot = 0.0f;
            for (int e = 0; e < d; e++) dot += from_bf16(q[i * ld + e]) * from_bf16(k[j * ld + e]);
            s[j] = dot * scale;
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < L; j++) {
            s[j] = exp_neg(s[j] - mx);
            sum += s[j];
        }
        for (int e = 0; e < d; e++) acc[e] = 0.0f;
        for (int j = 0; j < L; j++) {
            const float pj = s[j] / sum;
            for (int e = 0; e < d; e++) acc[e] += pj * from_bf16(v[j * ld + e]);
        }
        for (int e = 0; e < d; e++) store(o, !o_f32, i * ldo + e, acc[e]);
    }
}
#endif

/* The per-thread scratch of att_segment_head: k transposed and v in float32 (192 KB: too much for the stack of
   every OpenMP thread). */
#define ATT_SCRATCH (ATT_DMAX / 2 * ATT_LMAX * 4 + ATT_LMAX * ATT_DMAX * 4)

/* Returns 0, or -1 when the scratch memory cannot be allocated (nothing is written then). Sequences come in
   ascending length order, so they are handed out dynamically: a static split gave one thread all long ones. */
int sequence_attention(const bf16 *qkv, void *out, int out_f32, const int64_t *seg_start, const int64_t *seg_len,
                       int64_t segments, int64_t H, int64_t heads, float scale, int threads) {
    const size_t elem = out_f32 ? sizeof(float) : sizeof(bf16);
    const int d = (int)(H / heads);
    char *scratch = aligned_alloc(64, (size_t)threads * ATT_SCRATCH);
    if (!scratch) return -1;
#pragma omp parallel num_threads(threads)
    {
        char *mine = scratch + (size_t)omp_get_thread_num() * ATT_SCRATCH;
#pragma omp for schedule(dynamic, 4)
        for (int64_t g = 0; g < segments; g++) {
            const int64_t start = seg_start[g], len = seg_len[g];
            if (len <= 0) {
                memset((char *)out + (size_t)start * (size_t)H * elem, 0, (size_t)(-len) * (size_t)H * elem);
                continue;
            }
            for (int64_t h = 0; h < heads; h++) {
                const bf16 *base = qkv + start * 3 * H + h * d;
                att_segment_head(base, base + H, base + 2 * H, 3 * H, (char *)out + (size_t)(start * H + h * d) * elem,
                                 out_f32, H, (int)len, d, scale, mine);
            }
        }
    }
    free(scratch);
    return 0;
}

/* ---- training: attention inside each sequence, forward and backward (float32 or bf16 rows) ----

   seq_attention_fwd: for every segment (rows start..start+len-1 of one sequence of the token matrix) and
   head, P = softmax(scale * q k^T) over the sequence's own tokens, out = dropout(P) v, with q, k, v the head's
   columns of the fused (rows, 3H) qkv rows plus `bias` (float32 (3H,), or NULL). The log of each softmax row's
   normaliser is saved (lse, float32 (rows, heads)), and P itself when `probs` is not NULL (float32, segment g's
   heads at probs + prob_off[g]); without P the backward pass recomputes it from q, k and lse (one more small
   matmul instead of heads x len x len floats per sequence: the caller keeps P for short sequences only). The
   dropout mask of (token row t, head h, key j) is keep(row_key(seed, t * heads + h), j), recomputed in backward.
   Rows of a negative-length segment get zeros.
   seq_attention_bwd: the gradient for the qkv rows (without the bias; its gradient is the column sum).
   All arithmetic is float32 on L1/L2-resident copies of one (sequence, head): five small matmuls (AVX-512
   register blocks where the CPU has it and the head size is a multiple of 16; plain loops elsewhere). */

#define SA_LMAX ATT_LMAX  /* the same limits as the inference kernel (fused.py: SEQUENCE_ATTENTION_*) */
#define SA_DMAX ATT_DMAX
#define SA_SLOT (SA_LMAX * SA_DMAX)  /* one (len x d) or (d x len) float matrix */
#define SA_SQ (SA_LMAX * SA_LMAX)    /* one (len x len) float matrix */
/* per-thread scratch: q, k, v, a transposed k or v, dO or the output, dq, dk, dv; scores, dropped-out
   probabilities, score gradients */
#define SA_SCRATCH ((size_t)(8 * SA_SLOT + 3 * SA_SQ) * sizeof(float))

INLINE void sa_load(const void *x, const int is_bf16, int64_t row, int64_t ld, int64_t col, const float *bias, int L,
                    int d, float *dst) {
    for (int i = 0; i < L; i++) {
        const int64_t o = (row + i) * ld + col;
#pragma omp simd
        for (int e = 0; e < d; e++) dst[i * d + e] = load(x, is_bf16, o + e) + (bias ? bias[col + e] : 0.0f);
    }
}

INLINE void sa_store(void *x, const int is_bf16, int64_t row, int64_t ld, int64_t col, int L, int d, const float *src) {
    for (int i = 0; i < L; i++) {
        const int64_t o = (row + i) * ld + col;
#pragma omp simd
        for (int e = 0; e < d; e++) store(x, is_bf16, o + e, src[i * d + e]);
    }
}

static void sa_load_any(const void *x, int is_bf16, int64_t row, int64_t ld, int64_t col, const float *bias, int L,
                        int d, float *dst) {
    if (is_bf16) sa_load(x, 1, row, ld, col, bias, L, d, dst);
    else sa_load(x, 0, row, ld, col, bias, L, d, dst);
}

static void sa_store_any(void *x, int is_bf16, int64_t row, int64_t ld, int64_t col, int L, int d, const float *src) {
    if (is_bf16) sa_store(x, 1, row, ld, col, L, d, src);
    else sa_store(x, 0, row, ld, col, L, d, src);
}

/* The scratch matrices of one (sequence, head). */
typedef struct {
    float *q, *k, *v, *t, *a, *dq, *dk, *dv, *s, *pd, *ds;
} sa_work;

static sa_work sa_slots(char *scratch, int thread) {
    float *w = (float *)(scratch + (size_t)thread * SA_SCRATCH);
    sa_work m = {w, w + SA_SLOT, w + 2 * SA_SLOT, w + 3 * SA_SLOT, w + 4 * SA_SLOT, w + 5 * SA_SLOT,
                 w + 6 * SA_SLOT, w + 7 * SA_SLOT, w + 8 * SA_SLOT, w + 8 * SA_SLOT + SA_SQ, w + 8 * SA_SLOT + 2 * SA_SQ};
    return m;
}

/* Portable loops: forward of one (sequence, head); q, k, v in m; output to m.a, log normalisers to lse. */
static void sa_fwd_plain(sa_work m, int L, int d, float scale, float *lse, float *P, uint64_t seed, int64_t row0,
                         int64_t heads, int64_t h, uint32_t threshold, float dscale) {
    float *s = m.s;
    for (int i = 0; i < L; i++) {
        float mx = -INFINITY;
        for (int j = 0; j < L; j++) {
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int e = 0; e < d; e++) dot += m.q[i * d + e] * m.k[j * d + e];
            s[j] = scale * dot;
            mx = s[j] > mx ? s[j] : mx;
        }
        float sum = 0.0f;
        for (int j = 0; j < L; j++) {
            s[j] = exp_neg(s[j] - mx);
            sum += s[j];
        }
        const float inv = 1.0f / sum;
        lse[(row0 + i) * heads + h] = mx + logf(sum);
        float *oi = m.a + i * d;
        const uint32_t key = row_key(seed, (row0 + i) * heads + h);
        for (int e = 0; e < d; e++) oi[e] = 0.0f;
        for (int j = 0; j < L; j++) {
            const float pj = s[j] * inv;
            if (P) P[(int64_t)i * L + j] = pj;
            const float pd = threshold ? pj * keep(key, j, threshold) * dscale : pj;
#pragma omp simd
            for (int e = 0; e < d; e++) oi[e] += pd * m.v[j * d + e];
        }
    }
}

/* Portable loops: backward of one (sequence, head); q, k, v and dO (in m.a) in m; gradients to m.dq/dk/dv. */
static void sa_bwd_plain(sa_work m, int L, int d, float scale, const float *lse, const float *P, uint64_t seed,
                         int64_t row0, int64_t heads, int64_t h, uint32_t threshold, float dscale) {
    for (int e = 0; e < L * d; e++) m.dq[e] = m.dk[e] = m.dv[e] = 0.0f;
    for (int i = 0; i < L; i++) {
        float *pr = m.pd;  /* this row's probabilities, saved or recomputed */
        const float li = lse[(row0 + i) * heads + h];
        for (int j = 0; j < L && P; j++) pr[j] = P[(int64_t)i * L + j];
        for (int j = 0; j < L && !P; j++) {
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int e = 0; e < d; e++) dot += m.q[i * d + e] * m.k[j * d + e];
            pr[j] = exp_neg(scale * dot - li);
        }
        const float *doi = m.a + i * d;
        const uint32_t key = row_key(seed, (row0 + i) * heads + h);
        float c = 0.0f, *dp = m.s, *dsi = m.ds + (int64_t)i * L;
        for (int j = 0; j < L; j++) {
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int e = 0; e < d; e++) dot += doi[e] * m.v[j * d + e];
            const float mask = threshold ? keep(key, j, threshold) * dscale : 1.0f;
            dp[j] = dot * mask;
            c += dp[j] * pr[j];
            const float pd = pr[j] * mask;
#pragma omp simd
            for (int e = 0; e < d; e++) m.dv[j * d + e] += pd * doi[e];
        }
        for (int j = 0; j < L; j++) dsi[j] = scale * pr[j] * (dp[j] - c);
    }
    for (int i = 0; i < L; i++) {
        const float *dsi = m.ds + (int64_t)i * L;
        for (int j = 0; j < L; j++) {
            const float a = dsi[j];
#pragma omp simd
            for (int e = 0; e < d; e++) {
                m.dq[i * d + e] += a * m.k[j * d + e];
                m.dk[j * d + e] += a * m.q[i * d + e];
            }
        }
    }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && !defined(EMBTUNE_GENERIC)
#define SA_VECTOR 1
static void sa_transpose(const float *a, int L, int d, int LP, float *t) {  /* (L, d) -> (d, LP), zero padded */
    for (int e = 0; e < d; e++) {
        for (int j = 0; j < L; j++) t[e * LP + j] = a[j * d + e];
        for (int j = L; j < LP; j++) t[e * LP + j] = 0.0f;
    }
}

/* C rows a0..a0+3 (of width W floats, W a multiple of 16), vectors v0..v0+CB-1:
   C[a][:] = sum_{b < K} A(a, b) * B[b][:], with A(a, b) = A[a * sa + b * sb]. Rows past M repeat row a0 and are
   not stored; a register block of 4 x CB accumulators. */
INLINE void sa_mm_block(const float *A, int64_t sa, int64_t sb, const float *B, int W, int M, int K, float *C,
                        int a0, int v0, const int CB) {
    __m512 acc[4][4];
    for (int t = 0; t < 4; t++)
        for (int c = 0; c < CB; c++) acc[t][c] = _mm512_setzero_ps();
    const int na = M - a0 < 4 ? M - a0 : 4;
    const float *rows[4];
    for (int t = 0; t < 4; t++) rows[t] = A + (int64_t)(a0 + (t < na ? t : 0)) * sa;
    for (int b = 0; b < K; b++) {
        __m512 bv[4];
        for (int c = 0; c < CB; c++) bv[c] = _mm512_loadu_ps(B + (int64_t)b * W + (v0 + c) * 16);
        for (int t = 0; t < 4; t++) {
            const __m512 av = _mm512_set1_ps(rows[t][b * sb]);
            for (int c = 0; c < CB; c++) acc[t][c] = _mm512_fmadd_ps(av, bv[c], acc[t][c]);
        }
    }
    for (int t = 0; t < na; t++)
        for (int c = 0; c < CB; c++) _mm512_storeu_ps(C + (int64_t)(a0 + t) * W + (v0 + c) * 16, acc[t][c]);
}

static void sa_mm(const float *A, int64_t sa, int64_t sb, const float *B, int W, int M, int K, float *C) {
    const int nv = W / 16;
    for (int a0 = 0; a0 < M; a0 += 4) {
        int v0 = 0;
        for (; v0 + 4 <= nv; v0 += 4) sa_mm_block(A, sa, sb, B, W, M, K, C, a0, v0, 4);
        for (; v0 + 2 <= nv; v0 += 2) sa_mm_block(A, sa, sb, B, W, M, K, C, a0, v0, 2);
        for (; v0 < nv; v0++) sa_mm_block(A, sa, sb, B, W, M, K, C, a0, v0, 1);
    }
}

/* Forward of one (sequence, head), d a multiple of 16: S = q kt, softmax, dropout, out = pd v. */
static void sa_fwd_vec(sa_work m, int L, int d, float scale, float *lse, float *P, uint64_t seed, int64_t row0,
                       int64_t heads, int64_t h, uint32_t threshold, float dscale) {
    const int LP = (L + 15) & ~15;
    sa_transpose(m.k, L, d, LP, m.t);
    sa_mm(m.q, d, 1, m.t, LP, L, d, m.s);
    const __m512 vscale = _mm512_set1_ps(scale), vd = _mm512_set1_ps(dscale), ninf = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < L; i++) {
        float *si = m.s + (int64_t)i * LP, *pdi = m.pd + (int64_t)i * LP;
        __m512 mx = ninf;
        for (int j = 0; j < LP; j += 16) {
            const __m512 x = _mm512_mask_mul_ps(ninf, tail_mask(L - j), _mm512_loadu_ps(si + j), vscale);
            _mm512_storeu_ps(si + j, x);
            mx = _mm512_max_ps(mx, x);
        }
        const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < LP; j += 16) {
            const __m512 e = _mm512_maskz_mov_ps(tail_mask(L - j), v_exp_neg(_mm512_sub_ps(_mm512_loadu_ps(si + j), vmx)));
            _mm512_storeu_ps(si + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        const float total = _mm512_reduce_add_ps(sum);
        const __m512 inv = _mm512_set1_ps(1.0f / total);
        lse[(row0 + i) * heads + h] = _mm512_reduce_max_ps(mx) + logf(total);
        const uint32_t key = row_key(seed, (row0 + i) * heads + h);
        for (int j = 0; j < LP; j += 16) {
            const __mmask16 live = tail_mask(L - j);
            const __m512 pv = _mm512_mul_ps(_mm512_loadu_ps(si + j), inv);
            if (P) _mm512_mask_storeu_ps(P + (int64_t)i * L + j, live, pv);
            _mm512_storeu_ps(pdi + j, threshold ? _mm512_maskz_mul_ps(v_keep(key, j, threshold) & live, pv, vd) : pv);
        }
    }
    sa_mm(m.pd, LP, 1, m.v, d, L, L, m.a);
}

/* Backward of one (sequence, head), d a multiple of 16. */
static void sa_bwd_vec(sa_work m, int L, int d, float scale, const float *lse, const float *P, uint64_t seed,
                       int64_t row0, int64_t heads, int64_t h, uint32_t threshold, float dscale) {
    const int LP = (L + 15) & ~15;
    if (!P) {
        sa_transpose(m.k, L, d, LP, m.t);
        sa_mm(m.q, d, 1, m.t, LP, L, d, m.ds);  /* the scores again, into ds (then P, then the score gradients) */
    }
    sa_transpose(m.v, L, d, LP, m.t);
    sa_mm(m.a, d, 1, m.t, LP, L, d, m.s);  /* dO v^T: the gradient of the dropped-out probabilities */
    const __m512 vscale = _mm512_set1_ps(scale), vd = _mm512_set1_ps(dscale);
    for (int i = 0; i < L; i++) {
        float *si = m.s + (int64_t)i * LP, *pdi = m.pd + (int64_t)i * LP, *dsi = m.ds + (int64_t)i * LP;
        const float *pr = dsi;
        const __m512 li = _mm512_set1_ps(lse[(row0 + i) * heads + h]);
        const uint32_t key = row_key(seed, (row0 + i) * heads + h);
        __m512 c = _mm512_setzero_ps();
        for (int j = 0; j < LP; j += 16) {
            const __mmask16 live = tail_mask(L - j), kept = threshold ? v_keep(key, j, threshold) & live : live;
            const __m512 pv = P ? _mm512_maskz_loadu_ps(live, P + (int64_t)i * L + j)
                                : _mm512_maskz_mov_ps(live, v_exp_neg(_mm512_fmsub_ps(_mm512_loadu_ps(dsi + j), vscale, li)));
            _mm512_storeu_ps(dsi + j, pv);  /* P, read again below to form the score gradient in place */
            const __m512 dp = threshold ? _mm512_maskz_mul_ps(kept, _mm512_loadu_ps(si + j), vd)
                                        : _mm512_maskz_mov_ps(live, _mm512_loadu_ps(si + j));
            _mm512_storeu_ps(si + j, dp);
            _mm512_storeu_ps(pdi + j, threshold ? _mm512_maskz_mul_ps(kept, pv, vd) : pv);
            c = _mm512_fmadd_ps(dp, pv, c);
        }
        const __m512 vc = _mm512_set1_ps(_mm512_reduce_add_ps(c));
        for (int j = 0; j < LP; j += 16) {
            const __m512 pv = _mm512_loadu_ps(pr + j);
            _mm512_storeu_ps(dsi + j, _mm512_mul_ps(vscale, _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_loadu_ps(si + j), vc))));
        }
    }
    sa_mm(m.pd, 1, LP, m.a, d, L, L, m.dv);  /* pd^T dO */
    sa_mm(m.ds, LP, 1, m.k, d, L, L, m.dq);  /* ds k */
    sa_mm(m.ds, 1, LP, m.q, d, L, L, m.dk);  /* ds^T q */
}
#endif

/* The loop both passes share: every (segment, head) of the rows, or zeros in the target rows (`out`, H wide,
   forward; `dqkv`, 3H wide, backward) of a negative-length segment. Returns 0, or -1 when the per-thread
   scratch cannot be allocated (nothing is written then). */
static int sa_run(const int backward, const void *qkv, int is_bf16, const float *bias, const void *dout, float *lse,
                   float *probs, const int64_t *prob_off, void *target, const int64_t *seg_start,
                   const int64_t *seg_len, int64_t segments, int64_t H, int64_t heads, float scale, uint64_t seed,
                   uint32_t levels, float dscale, int threads) {
    const int d = (int)(H / heads);
    const uint32_t threshold = levels << 16;
    const size_t elem = is_bf16 ? 2 : 4;
    const int64_t width = backward ? 3 * H : H;
    char *scratch = aligned_alloc(64, (size_t)threads * SA_SCRATCH);
    if (!scratch) return -1;
#pragma omp parallel num_threads(threads)
    {
        const sa_work m = sa_slots(scratch, omp_get_thread_num());
#pragma omp for schedule(dynamic, 8) collapse(2)
        for (int64_t g = 0; g < segments; g++) {
            for (int64_t h = 0; h < heads; h++) {
                const int64_t start = seg_start[g];
                const int L = (int)seg_len[g];
                if (L <= 0) {
                    if (h == 0) memset((char *)target + (size_t)(start * width) * elem, 0, (size_t)(-L * width) * elem);
                    continue;
                }
                sa_load_any(qkv, is_bf16, start, 3 * H, h * d, bias, L, d, m.q);
                sa_load_any(qkv, is_bf16, start, 3 * H, H + h * d, bias, L, d, m.k);
                sa_load_any(qkv, is_bf16, start, 3 * H, 2 * H + h * d, bias, L, d, m.v);
                float *P = probs ? probs + prob_off[g] + h * (int64_t)L * L : NULL;
                if (backward) {
                    sa_load_any(dout, is_bf16, start, H, h * d, NULL, L, d, m.a);
#ifdef SA_VECTOR
                    if (d % 16 == 0) sa_bwd_vec(m, L, d, scale, lse, P, seed, start, heads, h, threshold, dscale);
                    else
#endif
                        sa_bwd_plain(m, L, d, scale, lse, P, seed, start, heads, h, threshold, dscale);
                    sa_store_any(target, is_bf16, start, 3 * H, h * d, L, d, m.dq);
                    sa_store_any(target, is_bf16, start, 3 * H, H + h * d, L, d, m.dk);
                    sa_store_any(target, is_bf16, start, 3 * H, 2 * H + h * d, L, d, m.dv);
                } else {
#ifdef SA_VECTOR
                    if (d % 16 == 0) sa_fwd_vec(m, L, d, scale, lse, P, seed, start, heads, h, threshold, dscale);
                    else
#endif
                        sa_fwd_plain(m, L, d, scale, lse, P, seed, start, heads, h, threshold, dscale);
                    sa_store_any(target, is_bf16, start, H, h * d, L, d, m.a);
                }
            }
        }
    }
    free(scratch);
    return 0;
}

int seq_attention_fwd(const void *qkv, int is_bf16, const float *bias, void *out, float *lse, float *probs,
                      const int64_t *prob_off, const int64_t *seg_start, const int64_t *seg_len, int64_t segments,
                      int64_t H, int64_t heads, float scale, uint64_t seed, uint32_t levels, float dscale,
                      int threads) {
    return sa_run(0, qkv, is_bf16, bias, NULL, lse, probs, prob_off, out, seg_start, seg_len, segments, H, heads,
                  scale, seed, levels, dscale, threads);
}

int seq_attention_bwd(const void *qkv, int is_bf16, const float *bias, const void *dout, const float *lse,
                      const float *probs, const int64_t *prob_off, void *dqkv, const int64_t *seg_start,
                      const int64_t *seg_len, int64_t segments, int64_t H, int64_t heads, float scale, uint64_t seed,
                      uint32_t levels, float dscale, int threads) {
    return sa_run(1, qkv, is_bf16, bias, dout, (float *)lse, (float *)probs, prob_off, dqkv, seg_start, seg_len,
                  segments, H, heads, scale, seed, levels, dscale, threads);
}

/* out[c] = sum over rows of x[r][c] (float32 sums in row order; bf16 or float32 x): the bias gradient of
   seq_attention_bwd's qkv rows. Column chunks are split over the threads, so the result does not depend on
   the thread count. */
INLINE void column_chunk(const void *x, const int is_bf16, int64_t rows, int64_t cols, int64_t lo, int64_t hi,
                         float *out) {
    float acc[64];
    for (int64_t c = lo; c < hi; c++) acc[c - lo] = 0.0f;
    for (int64_t r = 0; r < rows; r++) {
#pragma omp simd
        for (int64_t c = lo; c < hi; c++) acc[c - lo] += load(x, is_bf16, r * cols + c);
    }
    for (int64_t c = lo; c < hi; c++) out[c] = acc[c - lo];
}

void column_sums(const void *x, int is_bf16, int64_t rows, int64_t cols, float *out, int threads) {
    const int64_t chunks = (cols + 63) / 64;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t lo = k * 64, hi = lo + 64 < cols ? lo + 64 : cols;
        if (is_bf16) column_chunk(x, 1, rows, cols, lo, hi, out);
        else column_chunk(x, 0, rows, cols, lo, hi, out);
    }
}

/* ---- int8 inference (int8.py): the passes around the int8 matmuls of one encoder layer ----

   Activations are quantized per row: q = round(v * 127 / amax) (+ 128 as uint8 on VNNI CPUs: `zp`), scale =
   amax / 127, with amax = max |v| of the row (at least 1e-12). The int8 matmul (oneDNN) writes float32 sums with
   the weight scales applied; the row scale, the bias, the activation or the residual + layer norm, and the
   quantization for the next matmul are one pass over each row here, instead of ~8 torch ops over the matrix. */

#define Q8_MAX_COLS 4096 /* the widest rows converted in a stack buffer (bf16 input, activations) */

/* erf(x) (Abramowitz & Stegun 7.1.26, absolute error <= 1.5e-7), branch-free so the loops vectorize. */
static inline float erf_approx(float x) {
    const float a = fabsf(x);
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float e = 1.0f - p * t * exp_neg(-a * a);
    return copysignf(e, x);
}

/* act: 0 = GELU (erf), 1 = GELU (tanh approximation), 2 = ReLU. */
static inline float activation(float v, int act) {
    if (act == 2) return v > 0.0f ? v : 0.0f;
    if (act == 1) {
        const float z = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        const float e = exp_neg(-2.0f * fabsf(z));
        return 0.5f * v * (1.0f + copysignf((1.0f - e) / (1.0f + e), z));
    }
    return 0.5f * v * (1.0f + erf_approx(v * 0.7071067811865476f));
}

/* One row of float32 values to int8 (stored as its uint8 bit pattern, + zp); returns the row's scale. */
INLINE float quantize_row(const float *v, int64_t n, uint8_t *q, int zp) {
    float amax = 1e-12f;
#pragma omp simd reduction(max : amax)
    for (int64_t j = 0; j < n; j++) {
        const float a = fabsf(v[j]);
        amax = a > amax ? a : amax; /* not fmaxf: its NaN rules keep gcc from vectorizing the loop */
    }
    const float inv = 127.0f / amax;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) q[j] = (uint8_t)((int32_t)rintf(v[j] * inv) + zp);
    return amax / 127.0f;
}

/* x (rows, cols; float32, or bf16 with cols <= Q8_MAX_COLS) -> q (rows, cols) and scale (rows,). */
void q8_quantize(const void *x, int is_bf16, int64_t rows, int64_t cols, uint8_t *q, float *scale, int zp,
                 int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float row[Q8_MAX_COLS] __attribute__((aligned(64)));
        const float *v = (const float *)x + r * cols;
        if (is_bf16) {
            const bf16 *b = (const bf16 *)x + r * cols;
#pragma omp simd
            for (int64_t j = 0; j < cols; j++) row[j] = from_bf16(b[j]);
            v = row;
        }
        scale[r] = quantize_row(v, cols, q + r * cols, zp);
    }
}

/* y (rows, cols) float32 sums -> q, qscale: the quantization of act(y * rs[r] + bias). Rows of up to
   Q8_MAX_COLS go through a buffer (one read of y, no write); wider rows are overwritten in y. */
void q8_bias_act_quantize(float *y, const float *rs, const float *bias, int act, int64_t rows, int64_t cols,
                          uint8_t *q, float *qscale, int zp, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float row[Q8_MAX_COLS] __attribute__((aligned(64)));
        const float *in = y + r * cols;
        float *v = cols <= Q8_MAX_COLS ? row : y + r * cols;
        const float s = rs[r];
        if (act == 0) {
#pragma omp simd
            for (int64_t j = 0; j < cols; j++) v[j] = activation(in[j] * s + bias[j], 0);
        } else if (act == 1) {
#pragma omp simd
            for (int64_t j = 0; j < cols; j++) v[j] = activation(in[j] * s + bias[j], 1);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < cols; j++) v[j] = activation(in[j] * s + bias[j], 2);
        }
        qscale[r] = quantize_row(v, cols, q + r * cols, zp);
    }
}

/* out = LayerNorm(y * rs[r] + bias + x) per row of H (float32); with q, also its quantization (q, qscale); with
   out16, also its bf16 copy. out may not alias x. */
void q8_residual_ln(const float *y, const float *rs, const float *bias, const float *x, const float *gamma,
                    const float *beta, float eps, float *out, bf16 *out16, uint8_t *q, float *qscale, int zp,
                    int64_t rows, int64_t H, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t o = r * H;
        const float s = rs[r];
        float *v = out + o;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < H; j++) {
            v[j] = y[o + j] * s + bias[j] + x[o + j];
            sum += v[j];
        }
        const float m = sum / (float)H;
        float var = 0.0f;
#pragma omp simd reduction(+ : var)
        for (int64_t j = 0; j < H; j++) {
            const float d = v[j] - m;
            var += d * d;
        }
        const float rstd = 1.0f / sqrtf(var / (float)H + eps);
#pragma omp simd
        for (int64_t j = 0; j < H; j++) v[j] = (v[j] - m) * rstd * gamma[j] + beta[j];
        if (out16) {
#pragma omp simd
            for (int64_t j = 0; j < H; j++) out16[o + j] = to_bf16(v[j]);
        }
        if (q) qscale[r] = quantize_row(v, H, q + o, zp);
    }
}
