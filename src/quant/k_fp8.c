/*
 * k_fp8: float8 e4m3fn codes with a float32 scale per tensor or channel, the
 * fp8 row (compressed-tensors float-quantized, LOWBIT.md A.5 and F). The
 * conversion is torch's (c10's fp8e4m3fn_from_fp32_value) bit for bit; the
 * kernel clamps to +-448 first, as compressed-tensors does, so no code is NaN.
 */
#include "kernel.h"

#include <float.h>
#include <stdint.h>

#define FP8_MAX 448.0f

uint8_t mq_fp8_from_f32(float x)
{
	uint32_t bits = mq_f32_bits(x);
	const uint32_t sign = bits & 0x80000000u;
	bits ^= sign;
	uint8_t r;
	if (bits >= 1087u << 20) { /* 480 and beyond, Inf and NaN: NaN */
		r = 0x7f;
	} else if (bits < 121u << 23) { /* below 2^-6: a subnormal, rounded by the FPU's addition */
		const float denorm = mq_f32_from_bits(141u << 23);
		r = (uint8_t)(mq_f32_bits(mq_f32_from_bits(bits) + denorm) - (141u << 23));
	} else {
		uint32_t odd = (bits >> 20) & 1u;
		bits += ((uint32_t)(7 - 127) << 23) + 0x7ffffu + odd;
		r = (uint8_t)(bits >> 20);
	}
	return (uint8_t)(r | (uint8_t)(sign >> 24));
}

float mq_fp8_to_f32(uint8_t b)
{
	const uint32_t e = (b >> 3) & 15u, m = b & 7u;
	float v;
	if (e == 15 && m == 7)
		v = NAN;
	else if (e == 0)
		v = ldexpf((float)m, -9);
	else
		v = ldexpf((float)(8 + m), (int)e - 10);
	return b & 0x80 ? -v : v;
}

struct mq_qparams mq_fp8_params(const struct mq_scheme_traits *s, const struct mq_range *r, enum mq_dtype scale_dtype)
{
	(void)s;
	if (r->empty)
		return (struct mq_qparams){ 1.0f, 0 };
	float scale = mq_f32_from_bits(r->absmax_bits) / FP8_MAX;
	scale = scale < FLT_EPSILON ? FLT_EPSILON : scale;
	scale = mq_scale_round(scale_dtype, scale);
	return (struct mq_qparams){ scale < FLT_EPSILON ? FLT_EPSILON : scale, 0 };
}

size_t mq_fp8_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			   const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	(void)s;
	(void)importance;
	uint8_t *o = out;
	struct mq_lanes L;
	mq_lanes_init(&L);
	for (size_t i = 0; i < n; i++) {
		const float scale = p[i / group].scale;
		float y = x[i] / scale;
		y = y < -FP8_MAX ? -FP8_MAX : y > FP8_MAX ? FP8_MAX : y;
		o[i] = mq_fp8_from_f32(y);
		mq_lanes_add(&L, i, x[i], mq_fp8_to_f32(o[i]) * scale);
	}
	mq_lanes_end(&L, acc);
	return n;
}

size_t mq_fp8_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
		       const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	return mq_fp8_quantize_ref(s, x, n, group, p, importance, out, acc);
}

void mq_fp8_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
		       const struct mq_qparams *p, float *out)
{
	(void)s;
	const uint8_t *c = q;
	for (size_t i = 0; i < n; i++)
		out[i] = mq_fp8_to_f32(c[i]) * p[i / group].scale;
}
