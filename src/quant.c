#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

static const struct mq_scheme_info schemes[MQ_SCHEME_COUNT] = {
	[MQ_SCHEME_INT8] = { "int8", "int8", MQ_DTYPE_I8, 1, 0, -128, 127 },
	[MQ_SCHEME_UINT8] = { "uint8", "uint8", MQ_DTYPE_U8, 0, 0, 0, 255 },
	[MQ_SCHEME_FP16] = { "fp16", "float16", MQ_DTYPE_F16, 1, 1, 0, 0 },
	[MQ_SCHEME_BF16] = { "bf16", "bfloat16", MQ_DTYPE_BF16, 1, 1, 0, 0 },
};

const struct mq_scheme_info *mq_scheme_get(enum mq_scheme s)
{
	return &schemes[s];
}

int mq_scheme_parse(const char *name, enum mq_scheme *out)
{
	for (int s = 0; s < MQ_SCHEME_COUNT; s++) {
		if (strcmp(schemes[s].name, name) == 0) {
			*out = (enum mq_scheme)s;
			return 0;
		}
	}
	return -1;
}

void mq_range_init(struct mq_range *r)
{
	r->absmax_bits = 0;
	r->min_key = INT32_MAX;
	r->max_key = INT32_MIN;
	r->empty = 1;
}

int mq_range_update(struct mq_range *r, const float *x, size_t n, size_t *bad)
{
	if (n == 0)
		return 0;
	const uint32_t *u = (const uint32_t *)(const void *)x;
	uint32_t amax = r->absmax_bits;
	int32_t mn = r->min_key, mx = r->max_key;
	for (size_t i = 0; i < n; i++) {
		uint32_t a = u[i] & 0x7fffffffu;
		amax = a > amax ? a : amax;
		int32_t k = (int32_t)(u[i] ^ ((uint32_t)((int32_t)u[i] >> 31) & 0x7fffffffu));
		mn = k < mn ? k : mn;
		mx = k > mx ? k : mx;
	}
	if (amax >= 0x7f800000u) { /* a NaN or an Inf somewhere: find the first */
		for (size_t i = 0; i < n; i++) {
			if ((u[i] & 0x7fffffffu) >= 0x7f800000u) {
				*bad = i;
				return -1;
			}
		}
	}
	r->absmax_bits = amax;
	r->min_key = mn;
	r->max_key = mx;
	r->empty = 0;
	return 0;
}

struct mq_qparams mq_quant_params(enum mq_scheme s, const struct mq_range *r)
{
	struct mq_qparams p = { 1.0f, 0 };
	if (schemes[s].is_cast || r->empty)
		return p;
	if (s == MQ_SCHEME_INT8) {
		float amax = mq_f32_from_bits(r->absmax_bits);
		p.scale = amax / 127.5f;
	} else {
		float mn = mq_key_float(r->min_key), mx = mq_key_float(r->max_key);
		mn = mn < 0.0f ? mn : 0.0f;
		mx = mx > 0.0f ? mx : 0.0f;
		p.scale = (mx - mn) / 255.0f;
	}
	if (p.scale < FLT_EPSILON)
		p.scale = FLT_EPSILON;
	if (s == MQ_SCHEME_UINT8) {
		float mn = mq_key_float(r->min_key);
		mn = mn < 0.0f ? mn : 0.0f;
		float z = nearbyintf(0.0f - mn / p.scale);
		p.zero_point = z < 0.0f ? 0 : z > 255.0f ? 255 : (int32_t)z;
	}
	return p;
}

float mq_scheme_limit(enum mq_scheme s)
{
	if (s == MQ_SCHEME_FP16)
		return 65519.99609375f; /* largest float32 that rounds to a finite f16 */
	return FLT_MAX;
}

/* ---- shared pieces: the fixed summation order ---- */

#define LANES 8

static inline void lanes_fold(const double sig[LANES], const double noi[LANES], const double mx[LANES],
			      struct mq_err_acc *acc)
{
	double s = ((sig[0] + sig[1]) + (sig[2] + sig[3])) + ((sig[4] + sig[5]) + (sig[6] + sig[7]));
	double e = ((noi[0] + noi[1]) + (noi[2] + noi[3])) + ((noi[4] + noi[5]) + (noi[6] + noi[7]));
	double m = acc->max_abs;
	for (int l = 0; l < LANES; l++)
		m = mx[l] > m ? mx[l] : m;
	acc->signal += s;
	acc->noise += e;
	acc->max_abs = m;
}

/* ---- fast kernels: branch-free, written so the compiler can vectorise them ---- */

/* Rounds |y| < 2^22 to nearest even: adding 1.5*2^23 leaves no fraction bits. */
static inline float rne_small(float y)
{
	const float magic = 12582912.0f;
	return (y + magic) - magic;
}

static size_t quant_int_fast(const float *x, size_t n, struct mq_qparams p, int qmin, int qmax,
			     void *out, struct mq_err_acc *acc, int is_signed)
{
	const float inv = 1.0f / p.scale;
	const float zp = (float)p.zero_point, lo = (float)qmin, hi = (float)qmax;
	int8_t *o8 = out;
	uint8_t *u8 = out;
	double sig[LANES] = { 0 }, noi[LANES] = { 0 }, mx[LANES] = { 0 };
	size_t i = 0;
	for (; i + LANES <= n; i += LANES) {
		for (int l = 0; l < LANES; l++) {
			float xv = x[i + l];
			float q = rne_small(xv * inv) + zp;
			q = q < lo ? lo : q;
			q = q > hi ? hi : q;
			int32_t qi = (int32_t)q;
			if (is_signed)
				o8[i + l] = (int8_t)qi;
			else
				u8[i + l] = (uint8_t)qi;
			float d = (q - zp) * p.scale;
			double e = (double)xv - (double)d;
			sig[l] += (double)xv * (double)xv;
			noi[l] += e * e;
			double ae = fabs(e);
			mx[l] = ae > mx[l] ? ae : mx[l];
		}
	}
	for (int l = 0; i < n; i++, l++) {
		float xv = x[i];
		float q = rne_small(xv * inv) + zp;
		q = q < lo ? lo : q;
		q = q > hi ? hi : q;
		if (is_signed)
			o8[i] = (int8_t)(int32_t)q;
		else
			u8[i] = (uint8_t)(int32_t)q;
		float d = (q - zp) * p.scale;
		double e = (double)xv - (double)d;
		sig[l] += (double)xv * (double)xv;
		noi[l] += e * e;
		double ae = fabs(e);
		mx[l] = ae > mx[l] ? ae : mx[l];
	}
	lanes_fold(sig, noi, mx, acc);
	return n;
}

static size_t cast_fast(enum mq_scheme s, const float *x, size_t n, void *out, struct mq_err_acc *acc)
{
	uint16_t *o = out;
	const float *f16 = mq_f16_table();
	double sig[LANES] = { 0 }, noi[LANES] = { 0 }, mx[LANES] = { 0 };
	for (size_t i = 0; i < n; i++) {
		int l = (int)(i % LANES);
		float xv = x[i];
		uint16_t h = s == MQ_SCHEME_FP16 ? mq_f32_to_f16(xv) : mq_f32_to_bf16(xv);
		o[i] = h;
		float d = s == MQ_SCHEME_FP16 ? f16[h] : mq_bf16_to_f32(h);
		double e = (double)xv - (double)d;
		sig[l] += (double)xv * (double)xv;
		noi[l] += e * e;
		double ae = fabs(e);
		mx[l] = ae > mx[l] ? ae : mx[l];
	}
	lanes_fold(sig, noi, mx, acc);
	return 2 * n;
}

size_t mq_quant_row(enum mq_scheme s, const float *x, size_t n, struct mq_qparams p, void *out,
		    struct mq_err_acc *acc)
{
	switch (s) {
	case MQ_SCHEME_INT8: return quant_int_fast(x, n, p, -128, 127, out, acc, 1);
	case MQ_SCHEME_UINT8: return quant_int_fast(x, n, p, 0, 255, out, acc, 0);
	default: return cast_fast(s, x, n, out, acc);
	}
}

/* ---- the reference: one value at a time, library rounding, the same sum order ---- */

size_t mq_quant_row_ref(enum mq_scheme s, const float *x, size_t n, struct mq_qparams p, void *out,
			struct mq_err_acc *acc)
{
	const struct mq_scheme_info *si = &schemes[s];
	double sig[LANES] = { 0 }, noi[LANES] = { 0 }, mx[LANES] = { 0 };
	float inv = 1.0f / p.scale;
	for (size_t i = 0; i < n; i++) {
		float d;
		if (si->is_cast) {
			uint16_t h = s == MQ_SCHEME_FP16 ? mq_f32_to_f16(x[i]) : mq_f32_to_bf16(x[i]);
			((uint16_t *)out)[i] = h;
			d = s == MQ_SCHEME_FP16 ? mq_f16_to_f32(h) : mq_bf16_to_f32(h);
		} else {
			long q = lrintf(x[i] * inv) + p.zero_point;
			if (q < si->qmin)
				q = si->qmin;
			if (q > si->qmax)
				q = si->qmax;
			if (s == MQ_SCHEME_INT8)
				((int8_t *)out)[i] = (int8_t)q;
			else
				((uint8_t *)out)[i] = (uint8_t)q;
			d = mq_dequant(p, (int32_t)q);
		}
		double e = (double)x[i] - (double)d;
		sig[i % LANES] += (double)x[i] * (double)x[i];
		noi[i % LANES] += e * e;
		mx[i % LANES] = fmax(mx[i % LANES], fabs(e));
	}
	lanes_fold(sig, noi, mx, acc);
	return si->is_cast ? 2 * n : n;
}
