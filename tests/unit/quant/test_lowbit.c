/*
 * The low-bit rows against the formats they write (LOWBIT.md A.2, A.3, F): compressed-tensors'
 * pack_to_int32 vectors, the e4m3fn conversion against a reference written here from the format's
 * definition (nearest value of the decode table, ties to even, NaN above 464), zero points, scales
 * rounded to their stored dtype, groups, and the fast kernels against the reference on ties and
 * on values beyond the fp8 clamp.
 *
 * kernel.h is the quant layer's internal header: the test includes it for mq_fp8_from_f32 and
 * mq_fp8_to_f32, the conversion under test, which no public header declares.
 */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "kernel.h"
#include "scheme.h"

#define N_MAX 4096

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

/* A uniform float in [-0.5, 0.5). */
static float uniform(uint32_t *seed)
{
	return (float)(lcg(seed) >> 8) / 16777216.0f - 0.5f;
}

static struct mq_qparams params_of(const struct mq_scheme_traits *s, const float *x, size_t n,
				   enum mq_dtype scale_dtype)
{
	struct mq_range r;
	size_t bad;
	mq_range_init(&r);
	assert_int_equal(mq_range_update(&r, x, n, &bad), 0);
	return s->params(s, &r, scale_dtype);
}

/* Word k of packed storage, little-endian on disk. */
static uint32_t word_at(const void *q, size_t k)
{
	const unsigned char *b = (const unsigned char *)q + k * 4;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Signed code i of a packed row: u = (word >> (j * bits)) & mask, q = u - 2^(b-1) (LOWBIT.md A.3). */
static int32_t packed_code(const struct mq_scheme_traits *s, const void *q, size_t i)
{
	size_t per = (size_t)s->pack;
	uint32_t u = (word_at(q, i / per) >> ((i % per) * (size_t)s->bits)) & ((1u << s->bits) - 1);
	return (int32_t)u - (1 << (s->bits - 1));
}

/* The code compressed-tensors gives x (A.2): clamp(round(x / scale) + zp, qmin, qmax), round half to even. */
static int32_t ct_code(const struct mq_scheme_traits *s, float x, struct mq_qparams p)
{
	float q = nearbyintf(x / p.scale) + (float)p.zero_point;
	return q < (float)s->qmin ? s->qmin : q > (float)s->qmax ? s->qmax : (int32_t)q;
}

/*
 * Quantizes with the fast kernel and the reference, checks they agree bit for bit (bytes and the
 * three sums, as doubles), and leaves the fast result in out.
 */
static void quant_both(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
		       const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
	static unsigned char ref[4 * N_MAX];
	struct mq_err_acc a2 = { 0, 0, 0 };
	assert_true(mq_scheme_bytes(s, n) <= sizeof(ref));
	*acc = (struct mq_err_acc){ 0, 0, 0 };
	size_t b1 = mq_scheme_quantize(s, x, n, group, p, NULL, out, acc);
	size_t b2 = s->quantize_ref(s, x, n, group, p, NULL, ref, &a2);
	assert_int_equal(b1, b2);
	assert_int_equal(b1, mq_scheme_bytes(s, n));
	assert_memory_equal(out, ref, b1);
	assert_memory_equal(&acc->signal, &a2.signal, sizeof(double));
	assert_memory_equal(&acc->noise, &a2.noise, sizeof(double));
	assert_memory_equal(&acc->max_abs, &a2.max_abs, sizeof(double));
}

/* ---- compressed-tensors' pack_to_int32 test vectors (A.3) ---- */

/*
 * Codes [1, 2, 3, 4] and then the grid's bottom (u = 0, the padding value): x = q * scale with
 * scale 1, which the params function itself gives, the bottom -(qmax + 0.5) fixing max|x| at
 * (qmax - qmin) / 2 and rounding to even, to qmin.
 */
static void pack_vector(enum mq_scheme k, int32_t want0)
{
	const struct mq_scheme_traits *s = mq_scheme_get(k);
	float x[8];
	for (int i = 0; i < 8; i++)
		x[i] = i < 4 ? (float)(i + 1) : -((float)s->qmax + 0.5f);
	struct mq_qparams p = params_of(s, x, 8, MQ_DTYPE_F32);
	assert_true(p.scale == 1.0f);
	assert_int_equal(p.zero_point, 0);
	unsigned char q[32];
	struct mq_err_acc acc;
	quant_both(s, x, 8, 8, &p, q, &acc);
	assert_int_equal((int32_t)word_at(q, 0), want0);
	if (s->pack == 4)
		assert_int_equal(word_at(q, 1), 0); /* codes -128: u = 0 */
	for (int i = 0; i < 8; i++)
		assert_int_equal(packed_code(s, q, (size_t)i), i < 4 ? i + 1 : s->qmin);
}

static void test_lowbit_pack_to_int32_vectors(void **state)
{
	(void)state;
	pack_vector(MQ_SCHEME_INT4, 52137);
	pack_vector(MQ_SCHEME_W8A16, -2071756159);
	/* the bytes on disk: byte 0 holds columns 0 (low nibble) and 1 (high nibble) */
	const struct mq_scheme_traits *s = mq_scheme_get(MQ_SCHEME_INT4);
	float x[8] = { 1, 2, 3, 4, -7.5f, -7.5f, -7.5f, -7.5f };
	struct mq_qparams p = { 1.0f, 0 };
	unsigned char q[4];
	struct mq_err_acc acc;
	quant_both(s, x, 8, 8, &p, q, &acc);
	assert_int_equal(q[0], 0xa9);
	assert_int_equal(q[1], 0xcb);
	assert_int_equal(q[2], 0);
	assert_int_equal(q[3], 0);
}

/* ---- fp8 e4m3fn (F) ---- */

/* The format's definition: s eeee mmm, bias 7, subnormals m * 2^-9, S.1111.111 NaN, no infinity. */
static float e4m3_value(unsigned c)
{
	unsigned e = (c >> 3) & 15u, m = c & 7u;
	double v;
	if (e == 15 && m == 7)
		return NAN;
	if (e == 0)
		v = (m / 8.0) * ldexp(1.0, 1 - 7);
	else
		v = (1.0 + m / 8.0) * ldexp(1.0, (int)e - 7);
	return (float)(c & 0x80 ? -v : v);
}

static float e4m3_table[256];

static void e4m3_table_init(void)
{
	for (unsigned c = 0; c < 256; c++)
		e4m3_table[c] = e4m3_value(c);
}

/*
 * The reference conversion: the nearest finite value of the table, ties to the even code, NaN
 * (0x7F) above 464, the midpoint of 448 and 480 (the first value the format lacks); the sign
 * kept. Codes 0 .. 0x7E hold the magnitudes in increasing order, so a binary search finds the
 * last one <= |x|; the midpoint of two neighbours is exact in double.
 */
static uint8_t ref_e4m3(float x)
{
	uint8_t sign = signbit(x) ? 0x80 : 0;
	double a = fabs((double)x);
	if (isnan(x) || a > 464.0)
		return (uint8_t)(0x7f | sign);
	unsigned lo = 0, hi = 0x7e; /* table[lo] <= a < table[hi + 1] */
	while (lo < hi) {
		unsigned mid = (lo + hi + 1) / 2;
		if ((double)e4m3_table[mid] <= a)
			lo = mid;
		else
			hi = mid - 1;
	}
	unsigned r = lo;
	if (lo < 0x7e) {
		double half = ((double)e4m3_table[lo] + (double)e4m3_table[lo + 1]) / 2.0;
		if (a > half || (a == half && (lo & 1)))
			r = lo + 1;
	}
	return (uint8_t)(r | sign);
}

static void check_fp8(float x)
{
	uint8_t got = mq_fp8_from_f32(x), want = ref_e4m3(x);
	if (got != want)
		fail_msg("fp8 of %.9g (bits 0x%08x): 0x%02x, the nearest value is 0x%02x", (double)x, mq_f32_bits(x),
			 got, want);
}

static void check_fp8_both_signs(float x)
{
	check_fp8(x);
	check_fp8(-x);
}

static void test_lowbit_fp8_decode_table(void **state)
{
	(void)state;
	e4m3_table_init();
	for (unsigned c = 0; c < 256; c++) {
		float v = mq_fp8_to_f32((uint8_t)c);
		if ((c & 0x7f) == 0x7f)
			assert_true(isnan(v) && isnan(e4m3_table[c]));
		else
			assert_memory_equal(&v, &e4m3_table[c], sizeof(v)); /* -0 for 0x80 included */
	}
	assert_true(mq_fp8_to_f32(0x7e) == 448.0f);
	assert_true(mq_fp8_to_f32(0x08) == 0.015625f);      /* 2^-6, the smallest normal */
	assert_true(mq_fp8_to_f32(0x01) == 0.001953125f);   /* 2^-9, the smallest subnormal */
	assert_true(mq_fp8_to_f32(0xfe) == -448.0f);
	assert_true(isnan(mq_fp8_to_f32(0x7f)) && isnan(mq_fp8_to_f32(0xff)));
	assert_true(mq_fp8_to_f32(0x80) == 0.0f && signbit(mq_fp8_to_f32(0x80)));
}

static void test_lowbit_fp8_known_values(void **state)
{
	(void)state;
	static const struct { float x; uint8_t code; } known[] = {
		{ 449.0f, 0x7e }, { 456.0f, 0x7e }, { 464.0f, 0x7e }, /* not saturating: ties to even at 464 */
		{ 465.0f, 0x7f }, { 470.0f, 0x7f }, { 480.0f, 0x7f }, { 1e9f, 0x7f }, { INFINITY, 0x7f },
		{ 1.0f, 0x38 }, { 448.0f, 0x7e }, { 0.0f, 0x00 },
		{ 0.00146484375f, 0x01 }, /* 0.75 * 2^-9: up to the smallest subnormal */
		{ 0.0146484375f, 0x08 },  /* 7.5 * 2^-9: a tie, to the even code, the smallest normal */
		{ 0.0009765625f, 0x00 },  /* 2^-10, half the smallest subnormal: a tie, to zero */
	};
	for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
		assert_int_equal(mq_fp8_from_f32(known[k].x), known[k].code);
		assert_int_equal(mq_fp8_from_f32(-known[k].x), known[k].code | 0x80);
	}
	assert_int_equal(mq_fp8_from_f32(NAN) & 0x7f, 0x7f);
}

/*
 * mq_fp8_from_f32 against the reference: every 61st float of [2^-12, 480] (the stride meets every
 * residue of the low mantissa bits), every halfway point between neighbouring codes (480 above
 * 448) and the floats either side of it, the floats below 2^-12 in a coarser stride; both signs.
 */
static void test_lowbit_fp8_matches_the_nearest_value(void **state)
{
	(void)state;
	e4m3_table_init();
	const uint32_t lo = mq_f32_bits(0x1p-12f), hi = mq_f32_bits(480.0f);
	for (uint32_t b = lo; b <= hi; b += 61)
		check_fp8_both_signs(mq_f32_from_bits(b));
	for (uint32_t b = 0; b < lo; b += 4099)
		check_fp8_both_signs(mq_f32_from_bits(b));
	for (unsigned c = 0; c < 0x7f; c++) {
		float up = c < 0x7e ? e4m3_table[c + 1] : 480.0f;
		float half = (float)(((double)e4m3_table[c] + (double)up) / 2.0); /* exact: 4 significant bits */
		check_fp8_both_signs(half);
		check_fp8_both_signs(nextafterf(half, 0.0f));
		check_fp8_both_signs(nextafterf(half, INFINITY));
		check_fp8_both_signs(e4m3_table[c]);
	}
	check_fp8_both_signs(0.0f);
	check_fp8_both_signs(FLT_MIN);
	check_fp8_both_signs(FLT_TRUE_MIN);
	check_fp8_both_signs(FLT_MAX);
	check_fp8_both_signs(INFINITY);
}

/* ---- int4 and int8 packing ---- */

/*
 * Asymmetric rows (all positive, mixed, all negative): the zero point is the unsigned one
 * clamp(rne(-lo / s), 0, 2^b - 1) shifted by qmin; zero quantizes to it exactly and comes back
 * as zero; the ends of the range land on the grid's ends; every code is compressed-tensors' and
 * dequantizes as (q - zp) * s.
 */
static void zero_point_round_trip(enum mq_scheme k, uint32_t *seed)
{
	const struct mq_scheme_traits *s = mq_scheme_get(k);
	float x[256], d[256];
	unsigned char q[256];
	for (int trial = 0; trial < 50; trial++) {
		size_t n = 256;
		float shift = (float)(trial % 5) * 0.25f - 0.5f;
		for (size_t i = 0; i < n; i++)
			x[i] = uniform(seed) + shift;
		x[lcg(seed) % n] = 0.0f;
		struct mq_qparams p = params_of(s, x, n, MQ_DTYPE_F32);
		float lo = 0.0f, hi = 0.0f;
		for (size_t i = 0; i < n; i++) {
			lo = x[i] < lo ? x[i] : lo;
			hi = x[i] > hi ? x[i] : hi;
		}
		float scale = (hi - lo) / (float)(s->qmax - s->qmin);
		long zu = lrintf(-lo / scale);
		zu = zu < 0 ? 0 : zu > s->qmax - s->qmin ? s->qmax - s->qmin : zu;
		assert_true(p.scale == scale);
		assert_int_equal(p.zero_point, zu + s->qmin);
		struct mq_err_acc acc;
		quant_both(s, x, n, n, &p, q, &acc);
		s->dequantize(s, q, n, n, &p, d);
		for (size_t i = 0; i < n; i++) {
			int32_t c = packed_code(s, q, i);
			assert_int_equal(c, ct_code(s, x[i], p));
			assert_true(d[i] == mq_dequant(p, c));
			if (x[i] == 0.0f)
				assert_true(c == p.zero_point && d[i] == 0.0f);
			if (x[i] == lo && lo < 0.0f)
				assert_int_equal(c, s->qmin);
			if (x[i] == hi && hi > 0.0f)
				assert_true(c == s->qmax || c == s->qmax - 1); /* qmax, up to zp's rounding */
		}
	}
}

static void test_lowbit_zero_points_round_trip(void **state)
{
	(void)state;
	uint32_t seed = 31;
	zero_point_round_trip(MQ_SCHEME_INT4_ASYM, &seed);
	zero_point_round_trip(MQ_SCHEME_W8A16_ASYM, &seed);
}

/*
 * The scale stored in F16 or BF16 is the one the codes use (A.2: the arithmetic runs in the
 * model's dtype). max|x| = (qmax - qmin) / 2 * 1.2345 gives a float32 scale neither dtype holds;
 * each value (k + 0.5) * (s32 + sd) / 2 lies between the two scales' rounding boundaries, so
 * its code tells which scale was used.
 */
static void rounded_scale_is_used(enum mq_scheme k, enum mq_dtype dt)
{
	const struct mq_scheme_traits *s = mq_scheme_get(k);
	static float x[256];
	static unsigned char q[256];
	const float half_steps = mq_grid_half_steps(s->qmin, s->qmax);
	size_t n = 0;
	x[n++] = half_steps * 1.2345f;
	struct mq_qparams p32 = params_of(s, x, 1, MQ_DTYPE_F32), pd = params_of(s, x, 1, dt);
	assert_true(pd.scale == mq_scale_round(dt, p32.scale));
	assert_true(pd.scale != p32.scale);
	double mid = ((double)p32.scale + (double)pd.scale) / 2.0;
	for (int32_t c = s->qmin + 1; c < s->qmax; c++)
		x[n++] = (float)(((double)c + 0.5) * mid);
	while (n % (size_t)s->pack)
		x[n++] = 0.0f;
	struct mq_qparams again = params_of(s, x, n, dt);
	assert_true(again.scale == pd.scale); /* the values stay inside the range */
	struct mq_err_acc acc;
	quant_both(s, x, n, n, &pd, q, &acc);
	int differ = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t c = packed_code(s, q, i);
		assert_int_equal(c, ct_code(s, x[i], pd));
		differ += c != ct_code(s, x[i], p32);
	}
	assert_true(differ >= (s->qmax - s->qmin) / 2); /* the test tells the two scales apart */
}

/* The same for asymmetric rows: the zero point comes from the rounded scale. */
static void rounded_scale_sets_zero_point(enum mq_scheme k, enum mq_dtype dt)
{
	const struct mq_scheme_traits *s = mq_scheme_get(k);
	float x[8] = { -0.7777f, 1.2345f, 0.1f, -0.3f, 0.0f, 0.5f, 0.25f, -0.5f };
	struct mq_qparams p = params_of(s, x, 8, dt);
	float want = mq_scale_round(dt, (1.2345f + 0.7777f) / (float)(s->qmax - s->qmin));
	assert_true(p.scale == want);
	long zu = lrintf(0.7777f / want);
	zu = zu < 0 ? 0 : zu > s->qmax - s->qmin ? s->qmax - s->qmin : zu;
	assert_int_equal(p.zero_point, zu + s->qmin);
}

static void test_lowbit_codes_use_the_rounded_scale(void **state)
{
	(void)state;
	static const enum mq_scheme packed[] = { MQ_SCHEME_INT4, MQ_SCHEME_W8A16 };
	static const enum mq_dtype dts[] = { MQ_DTYPE_BF16, MQ_DTYPE_F16 };
	for (size_t i = 0; i < 2; i++)
		for (size_t j = 0; j < 2; j++) {
			rounded_scale_is_used(packed[i], dts[j]);
			rounded_scale_sets_zero_point(packed[i] + 1, dts[j]); /* the -asym row follows */
		}
	/* the row stores its scale in the model's dtype: that is the dtype a run passes */
	assert_int_equal(mq_scheme_scale_dtype(mq_scheme_get(MQ_SCHEME_INT4), MQ_DTYPE_BF16), MQ_DTYPE_BF16);
	assert_int_equal(mq_scheme_scale_dtype(mq_scheme_get(MQ_SCHEME_W8A16), MQ_DTYPE_F16), MQ_DTYPE_F16);
	/* fp8's params function rounds too where asked, though its row stores F32 */
	const struct mq_scheme_traits *f = mq_scheme_get(MQ_SCHEME_FP8);
	float y[2] = { 448.0f * 1.2345f, -1.0f };
	assert_true(params_of(f, y, 2, MQ_DTYPE_BF16).scale == mq_scale_round(MQ_DTYPE_BF16, 1.2345f));
	assert_true(params_of(f, y, 2, MQ_DTYPE_F32).scale == 1.2345f);
}

/* Values of a row whose groups differ in magnitude (x 1/8 to 8), with outliers and zeros. */
static void grouped_row(uint32_t *seed, float *x, size_t n, size_t group)
{
	for (size_t i = 0; i < n; i++) {
		float mag = (float)(1u << (i / group % 7)) / 8.0f;
		uint32_t k = lcg(seed) % 97;
		x[i] = k == 0 ? 0.0f : k == 1 ? uniform(seed) * 50.0f * mag : uniform(seed) * mag;
	}
}

/*
 * Groups of 32, 64 and 128 (and one per row) on rows of 128 to 4096: group k is quantized with its
 * own parameters, into its own words, exactly as alone; its codes are compressed-tensors'; and
 * dequantization gives back (q - zp) * s of each group.
 */
static void check_groups(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group)
{
	static struct mq_qparams p[N_MAX / 32];
	static unsigned char q[4 * N_MAX], alone[4 * 128];
	static float d[N_MAX];
	for (size_t g = 0; g < n / group; g++)
		p[g] = params_of(s, x + g * group, group, MQ_DTYPE_BF16);
	struct mq_err_acc acc, one = { 0, 0, 0 };
	quant_both(s, x, n, group, p, q, &acc);
	s->dequantize(s, q, n, group, p, d);
	size_t gb = (size_t)mq_scheme_bytes(s, group);
	for (size_t g = 0; g < n / group; g++) {
		if (group <= 128) {
			s->quantize_ref(s, x + g * group, group, group, &p[g], NULL, alone, &one);
			assert_memory_equal(q + g * gb, alone, gb);
		}
		for (size_t i = g * group; i < (g + 1) * group; i++) {
			int32_t c = packed_code(s, q, i);
			assert_int_equal(c, ct_code(s, x[i], p[g]));
			assert_true(d[i] == mq_dequant(p[g], c));
		}
	}
}

static void test_lowbit_groups_on_long_rows(void **state)
{
	(void)state;
	static const enum mq_scheme packed[] = { MQ_SCHEME_INT4, MQ_SCHEME_INT4_ASYM, MQ_SCHEME_W8A16,
						 MQ_SCHEME_W8A16_ASYM };
	static const size_t groups[] = { 32, 64, 128 };
	static float x[N_MAX];
	uint32_t seed = 2024;
	for (size_t k = 0; k < sizeof(packed) / sizeof(packed[0]); k++) {
		const struct mq_scheme_traits *s = mq_scheme_get(packed[k]);
		for (size_t n = 128; n <= N_MAX; n *= 2) {
			for (size_t gi = 0; gi < sizeof(groups) / sizeof(groups[0]); gi++) {
				grouped_row(&seed, x, n, groups[gi]);
				check_groups(s, x, n, groups[gi]);
			}
			check_groups(s, x, n, n);
		}
	}
}

/* ---- the fast kernels against the reference ---- */

/*
 * Scales of at most 3 significant bits, none a power of two: a tie y (at most 9 significant bits)
 * times one is exact, so x / s gives the tie back exactly. Most are 7 * 2^k, whose float32
 * reciprocal is 2^-24.4 too large: x * (1/s) then misses every tie with a significand above
 * about 1.33 by an ulp, upwards, and a kernel that multiplied would round half of those the
 * wrong way.
 */
static const float tie_scales[] = { 7.0f, 0.875f, 3.0f, 0.02734375f };
#define N_TIE_SCALES (sizeof(tie_scales) / sizeof(tie_scales[0]))

/* Says once why a comparison of the fast kernel with the reference proves nothing here. */
static void tell_if_scalar(void)
{
	static int told;
	if (!told && strcmp(mq_quant_kernel_name(), "scalar") == 0)
		print_message("fast kernel not available on this CPU (no AVX2/F16C, or MQ_NO_SIMD set): "
			      "fast = reference is trivial, only the codes are checked\n");
	told = 1;
}

/* x[i] = y * s for the tie y of value i and the scale of its group; p[g] = that scale and zp. */
static void tie_row(const struct mq_scheme_traits *s, const float *ys, size_t n_ys, float *x, size_t n,
		    size_t group, struct mq_qparams *p)
{
	for (size_t g = 0; g * group < n; g++) {
		int32_t span = s->qmax - s->qmin + 1;
		p[g].scale = tie_scales[g % N_TIE_SCALES];
		p[g].zero_point = s->symmetric ? 0 : s->qmin + (int32_t)((g * 5) % (size_t)span);
	}
	for (size_t i = 0; i < n; i++)
		x[i] = ys[(i * 7 + i / 64) % n_ys] * p[i / group].scale;
}

/*
 * The packed rows on ties k + 0.5 for k from two below the grid to one above (clamped), and on
 * whole steps, in groups of 32, 64 and 128 and one per row (1000 and 1024 values, and 1028 for
 * int8, whose last word the scalar tail writes): fast = reference bit for bit, and every code is
 * the round half to even of x / s plus zp, clamped.
 */
static void pack_ties(const struct mq_scheme_traits *s)
{
	static const size_t groups[] = { 32, 64, 128, 0 };
	static const size_t lengths[] = { 1024, 1000, 1028 };
	static float ys[600], x[1028];
	static unsigned char q[4 * 1028];
	static struct mq_qparams p[1028 / 32 + 1];
	size_t n_ys = 0;
	for (int32_t k = s->qmin - 2; k <= s->qmax + 1; k++) {
		ys[n_ys++] = (float)k + 0.5f;
		ys[n_ys++] = (float)k;
	}
	for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
		size_t n = lengths[li];
		if (n % (size_t)s->pack)
			continue; /* whole words only (kernel.h) */
		for (size_t gi = 0; gi < sizeof(groups) / sizeof(groups[0]); gi++) {
			size_t group = groups[gi] ? groups[gi] : n;
			if (n % group)
				continue;
			tie_row(s, ys, n_ys, x, n, group, p);
			struct mq_err_acc acc;
			quant_both(s, x, n, group, p, q, &acc);
			for (size_t i = 0; i < n; i++)
				assert_int_equal(packed_code(s, q, i), ct_code(s, x[i], p[i / group]));
		}
	}
}

/*
 * fp8 on every code's value and every halfway point between neighbours (ties to the even code),
 * and beyond the clamp: +-449, +-464 (the tie 448 / 480), +-465 and +-500 times the scale, and
 * +-FLT_MAX, whose quotient may overflow to infinity; groups as above, one per row on 1024 and on
 * 1001 values (a scalar tail of 1). Every code is the reference conversion of x / s clamped.
 */
static void fp8_ties(const struct mq_scheme_traits *s)
{
	static const size_t groups[] = { 32, 64, 128, 0 };
	static const size_t lengths[] = { 1024, 1001 };
	static const float beyond[] = { 449.0f, 464.0f, 465.0f, 500.0f, 10000.0f };
	static float ys[600], x[1024];
	static unsigned char q[1024];
	static struct mq_qparams p[1024 / 32 + 1];
	size_t n_ys = 0;
	e4m3_table_init();
	for (unsigned c = 0; c < 0x7f; c++) {
		float up = c < 0x7e ? e4m3_table[c + 1] : 480.0f;
		float mid = (float)(((double)e4m3_table[c] + (double)up) / 2.0);
		ys[n_ys++] = e4m3_table[c];
		ys[n_ys++] = -mid;
		ys[n_ys++] = mid;
		ys[n_ys++] = -e4m3_table[c];
	}
	for (size_t k = 0; k < sizeof(beyond) / sizeof(beyond[0]); k++) {
		ys[n_ys++] = beyond[k];
		ys[n_ys++] = -beyond[k];
	}
	for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
		size_t n = lengths[li];
		for (size_t gi = 0; gi < sizeof(groups) / sizeof(groups[0]); gi++) {
			size_t group = groups[gi] ? groups[gi] : n;
			if (n % group)
				continue;
			tie_row(s, ys, n_ys, x, n, group, p);
			x[n / 3] = FLT_MAX;
			x[n / 2] = -FLT_MAX;
			struct mq_err_acc acc;
			quant_both(s, x, n, group, p, q, &acc);
			for (size_t i = 0; i < n; i++) {
				float y = x[i] / p[i / group].scale;
				y = y < -448.0f ? -448.0f : y > 448.0f ? 448.0f : y;
				if (q[i] != ref_e4m3(y))
					fail_msg("fp8: x %.9g / %.9g -> 0x%02x, the nearest value is 0x%02x",
						 (double)x[i], (double)p[i / group].scale, q[i], ref_e4m3(y));
			}
		}
	}
}

static void test_lowbit_fast_kernels_match_on_ties(void **state)
{
	(void)state;
	tell_if_scalar();
	static const enum mq_scheme packed[] = { MQ_SCHEME_INT4, MQ_SCHEME_INT4_ASYM, MQ_SCHEME_W8A16,
						 MQ_SCHEME_W8A16_ASYM };
	for (size_t k = 0; k < sizeof(packed) / sizeof(packed[0]); k++)
		pack_ties(mq_scheme_get(packed[k]));
	fp8_ties(mq_scheme_get(MQ_SCHEME_FP8));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lowbit_pack_to_int32_vectors),
		cmocka_unit_test(test_lowbit_fp8_decode_table),
		cmocka_unit_test(test_lowbit_fp8_known_values),
		cmocka_unit_test(test_lowbit_fp8_matches_the_nearest_value),
		cmocka_unit_test(test_lowbit_zero_points_round_trip),
		cmocka_unit_test(test_lowbit_codes_use_the_rounded_scale),
		cmocka_unit_test(test_lowbit_groups_on_long_rows),
		cmocka_unit_test(test_lowbit_fast_kernels_match_on_ties),
	};
	return cmocka_run_group_tests_name("lowbit", tests, NULL, NULL);
}
