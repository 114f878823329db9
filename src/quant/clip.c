/*
 * clip: the MSE range search of a group (clip.h): candidates from shrunk
 * ranges through the row's params function, their codes from the row's
 * kernel, their error in float64 with |e|^2.4 from IEEE operations only.
 */
#include "clip.h"

#include <math.h>
#include <string.h>

#include "kernel.h"
#include "status.h"

/* Values quantized per call of the kernel: a multiple of every pack (32 / bits). */
#define CLIP_CHUNK 64

int mq_clip_parse(const char *name, enum mq_clip *out)
{
	if (strcmp(name, "none") == 0)
		*out = MQ_CLIP_NONE;
	else if (strcmp(name, "mse") == 0)
		*out = MQ_CLIP_MSE;
	else
		return -1;
	return 0;
}

const char *mq_clip_name(enum mq_clip c)
{
	return c == MQ_CLIP_MSE ? "mse" : "none";
}

/* 2^(2.4 r) for r = 0 .. 4, correctly rounded (2^(12 r / 5)). */
static const double pow2_12_5[5] = { 1.0, 5.278031643091577, 27.857618025475972, 147.0333894396205,
				     776.0468820533238 };

/*
 * |e|^2.4 = m^2.4 2^(2.4 k) for |e| = m 2^k, m in [1, 2). With M = m^2
 * (exact: m has 24 significant bits) and z = M^(-1/5) = m^(-0.4),
 * m^2.4 = M / z. z: a degree-4 interpolation in t = m - 1.5 at Chebyshev
 * nodes (relative error 5.9e-5), then two Newton steps on z^-5 = M, free of
 * division (each takes the error e to about 3 e^2: 1e-8, then below
 * rounding). 2^(2.4 k) = 2^(12 j) 2^(2.4 r) for k = 5 j + r, with
 * n = k + 150 >= 1 (|e| >= 2^-149), j = floor(n / 5) - 30, r = n mod 5.
 * The AVX2 path below does the same operations in the same order, 4 at a
 * time: the same bits.
 */
#define POW_C0 0.8502830004171938
#define POW_C1 (-0.2263294028020615)
#define POW_C2 0.10556453829232677
#define POW_C3 (-0.06288546009516718)
#define POW_C4 0.035860537814629674

static double pow_2_4(float e)
{
	const double a = fabs((double)e);
	if (!(a > 0.0) || !(a < HUGE_VAL))
		return a; /* 0, or an Inf (never from finite x and codes) */
	uint64_t u;
	memcpy(&u, &a, sizeof(u));
	const uint64_t n = (u >> 52) - 873; /* k + 150: a float is a normal double, k in [-149, 127] */
	const uint64_t q = n / 5, r = n - 5 * q;
	u = (u & 0x000fffffffffffffull) | (1023ull << 52);
	double m;
	memcpy(&m, &u, sizeof(m));
	const double M = m * m, t = m - 1.5;
	double z = POW_C0 + t * (POW_C1 + t * (POW_C2 + t * (POW_C3 + t * POW_C4)));
	for (int it = 0; it < 2; it++) {
		const double z2 = z * z;
		z = z + z * (1.0 - M * (z2 * z2 * z)) * 0.2;
	}
	const uint64_t pb = (12 * q + 663) << 52; /* 2^(12 j) = 2^(12 q - 360): a normal double */
	double p2;
	memcpy(&p2, &pb, sizeof(p2));
	return M / z * pow2_12_5[r] * p2;
}

#ifdef MQ_HAVE_AVX2
/* pow_2_4 of e[0 .. 3] into out. */
MQ_AVX2 static void pow_2_4_avx2(const float *e, double *out)
{
	const __m256d a = _mm256_andnot_pd(_mm256_set1_pd(-0.0), _mm256_cvtps_pd(_mm_loadu_ps(e)));
	const __m256d special = _mm256_or_pd(_mm256_cmp_pd(a, _mm256_setzero_pd(), _CMP_NGT_UQ),
					     _mm256_cmp_pd(a, _mm256_set1_pd(HUGE_VAL), _CMP_NLT_UQ)); /* not 0 < a < Inf */
	const __m256i u = _mm256_castpd_si256(_mm256_blendv_pd(a, _mm256_set1_pd(1.0), special));
	const __m256i n = _mm256_sub_epi64(_mm256_srli_epi64(u, 52), _mm256_set1_epi64x(873));
	/* floor(n / 5) = (n * 52429) >> 18 for n < 2^14: n <= 277 here */
	const __m256i q = _mm256_srli_epi64(_mm256_mul_epu32(n, _mm256_set1_epi64x(52429)), 18);
	const __m256i r = _mm256_sub_epi64(n, _mm256_add_epi64(_mm256_slli_epi64(q, 2), q));
	const __m256i q12 = _mm256_add_epi64(_mm256_slli_epi64(q, 3), _mm256_slli_epi64(q, 2));
	const __m256d p2 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(q12, _mm256_set1_epi64x(663)), 52));
	const __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(u, _mm256_set1_epi64x(0x000fffffffffffffll)),
							      _mm256_set1_epi64x(1023ll << 52)));
	const __m256d M = _mm256_mul_pd(m, m), t = _mm256_sub_pd(m, _mm256_set1_pd(1.5));
	__m256d z = _mm256_add_pd(_mm256_set1_pd(POW_C3), _mm256_mul_pd(t, _mm256_set1_pd(POW_C4)));
	z = _mm256_add_pd(_mm256_set1_pd(POW_C2), _mm256_mul_pd(t, z));
	z = _mm256_add_pd(_mm256_set1_pd(POW_C1), _mm256_mul_pd(t, z));
	z = _mm256_add_pd(_mm256_set1_pd(POW_C0), _mm256_mul_pd(t, z));
	for (int it = 0; it < 2; it++) {
		const __m256d z2 = _mm256_mul_pd(z, z);
		const __m256d d = _mm256_sub_pd(_mm256_set1_pd(1.0), _mm256_mul_pd(M, _mm256_mul_pd(_mm256_mul_pd(z2, z2), z)));
		z = _mm256_add_pd(z, _mm256_mul_pd(_mm256_mul_pd(z, d), _mm256_set1_pd(0.2)));
	}
	__m256d y = _mm256_mul_pd(_mm256_div_pd(M, z), _mm256_i64gather_pd(pow2_12_5, r, 8));
	y = _mm256_mul_pd(y, p2);
	_mm256_storeu_pd(out, _mm256_blendv_pd(y, a, special));
}
#endif

double mq_clip_term(double norm, float e)
{
	if (norm == 2.4)
		return pow_2_4(e);
	if (norm == 2.0)
		return (double)e * (double)e;
	return pow(fabs((double)e), norm);
}

void mq_clip_terms(double norm, const float *e, double *out, size_t len)
{
	size_t i = 0;
	if (norm == 2.4) {
#ifdef MQ_HAVE_AVX2
		if (mq_cpu_avx2())
			for (; i + 4 <= len; i += 4)
				pow_2_4_avx2(e + i, out + i);
#endif
		for (; i < len; i++)
			out[i] = pow_2_4(e[i]);
	}
	for (; i < len; i++)
		out[i] = mq_clip_term(norm, e[i]);
}

struct clip_err {
	double norm, sq; /* sum |e|^norm and sum e^2, float64, element order */
};

/*
 * The errors of the n values x with parameters p, as the row's kernel codes
 * them (mq_scheme_quantize: the fast kernel, bit for bit the reference, or
 * the reference; each value on its own, so the chunks give the codes of the
 * whole group). Stops once E.norm reaches bound (E is then partial, and the
 * full one would not be below bound either).
 */
static struct clip_err group_error(const struct mq_scheme_traits *s, double norm, const float *x, size_t n,
				   struct mq_qparams p, double bound)
{
	uint32_t codes[CLIP_CHUNK]; /* up to 4 bytes a value */
	float d[CLIP_CHUNK], e[CLIP_CHUNK];
	double term[CLIP_CHUNK];
	struct clip_err E = { 0.0, 0.0 };
	for (size_t o = 0; o < n && E.norm < bound; o += CLIP_CHUNK) {
		const size_t len = n - o < CLIP_CHUNK ? n - o : CLIP_CHUNK;
		struct mq_err_acc acc = { 0.0, 0.0, 0.0 };
		mq_scheme_quantize(s, x + o, len, len, &p, NULL, codes, &acc);
		s->dequantize(s, codes, len, len, &p, d);
		for (size_t i = 0; i < len; i++)
			e[i] = x[o + i] - d[i];
		mq_clip_terms(norm, e, term, len);
		for (size_t i = 0; i < len; i++) {
			E.sq += (double)e[i] * (double)e[i];
			E.norm += term[i];
		}
	}
	return E;
}

/* The range r times p: amax * p, min * p, max * p in float32 (p > 0 keeps the order). */
static struct mq_range shrink(const struct mq_range *r, float p)
{
	struct mq_range q = *r;
	q.absmax_bits = mq_f32_bits(mq_f32_from_bits(r->absmax_bits) * p);
	q.min_key = mq_float_key(mq_key_float(r->min_key) * p);
	q.max_key = mq_float_key(mq_key_float(r->max_key) * p);
	return q;
}

static int same_params(struct mq_qparams a, struct mq_qparams b)
{
	return mq_f32_bits(a.scale) == mq_f32_bits(b.scale) && a.zero_point == b.zero_point;
}

/* The search's state for one group: the best candidate so far and min/max's. */
struct clip_best {
	struct mq_qparams p, minmax;
	struct clip_err E, E_minmax;
	int step, steps_taken;
};

static void clip_search(const struct mq_scheme_traits *s, const float *x, size_t n, enum mq_dtype scale_dtype,
			const struct mq_clip_opts *o, const struct mq_range *r, struct clip_best *b)
{
	const int steps = (int)(o->maxshrink * (double)o->grid);
	b->minmax = b->p = s->params(s, r, scale_dtype);
	b->E_minmax = b->E = group_error(s, o->norm, x, n, b->p, HUGE_VAL);
	b->step = 0;
	b->steps_taken = 1;
	struct mq_qparams prev = b->p;
	int stale = 0;
	for (int i = 1; i < steps; i++) {
		b->steps_taken++;
		const float p = (float)(1.0 - (double)i / (double)o->grid);
		const struct mq_range ri = shrink(r, p);
		const struct mq_qparams q = s->params(s, &ri, scale_dtype);
		if (!same_params(q, prev)) {
			const struct clip_err E = group_error(s, o->norm, x, n, q, b->E.norm);
			prev = q;
			if (E.norm < b->E.norm) {
				b->p = q;
				b->E = E;
				b->step = i;
				stale = 0;
				continue;
			}
		}
		if (o->patience > 0 && ++stale >= o->patience)
			break;
	}
}

struct mq_qparams mq_clip_mse(const struct mq_scheme_traits *s, const float *x, size_t n, enum mq_dtype scale_dtype,
			      const struct mq_clip_opts *o, struct mq_clip_stats *st)
{
	static const struct mq_clip_opts dflt = MQ_CLIP_OPTS_DEFAULT;
	o = o ? o : &dflt;
	MQ_ASSERT(s->granularities != 0 && n % (size_t)s->pack == 0);
	MQ_ASSERT(o->grid > 0 && o->norm > 0.0);
	MQ_ASSERT(mq_scheme_bytes(s, CLIP_CHUNK) <= CLIP_CHUNK * sizeof(uint32_t));
	struct mq_range r;
	size_t bad;
	mq_range_init(&r);
	if (n == 0 || mq_range_update(&r, x, n, &bad) != 0) {
		mq_range_init(&r);
		return s->params(s, &r, scale_dtype);
	}
	struct clip_best b;
	clip_search(s, x, n, scale_dtype, o, &r, &b);
	const int fallback = b.step > 0 && b.E.sq > b.E_minmax.sq;
	if (fallback) {
		b.p = b.minmax;
		b.step = 0;
		b.E = b.E_minmax;
	}
	if (st) {
		st->n_groups++;
		st->n_changed += b.step > 0;
		st->n_fallback += (uint64_t)fallback;
		st->n_steps += (uint64_t)b.steps_taken;
		st->shrink_steps += (uint64_t)b.step;
		st->sq_minmax += b.E_minmax.sq;
		st->sq_chosen += b.E.sq;
		st->norm_chosen += b.E.norm;
	}
	return b.p;
}
