/*
 * k_pack: b-bit integer codes packed into little-endian 32-bit words, the
 * int4, int4-asym, w8a16 and w8a16-asym rows (compressed-tensors
 * pack-quantized, LOWBIT.md A.3). The reference quantizes one value at a
 * time; a fast path must give the same words and error sums bit for bit.
 */
#include "kernel.h"

#include <stdint.h>

/* One value: its code on the row's grid, by a true division by the stored scale. */
static inline int32_t pack_code(const struct mq_scheme_traits *s, float x, struct mq_qparams p)
{
	float q = nearbyintf(x / p.scale) + (float)p.zero_point;
	q = q < (float)s->qmin ? (float)s->qmin : q > (float)s->qmax ? (float)s->qmax : q;
	return (int32_t)q;
}

/* Values [i, n) of the row (i a multiple of s->pack), group by group, into the words out and L. */
static void pack_span(const struct mq_scheme_traits *s, const float *x, size_t i, size_t n, size_t group,
		      const struct mq_qparams *p, uint32_t *out, struct mq_lanes *L)
{
	const unsigned bits = (unsigned)s->bits, per = (unsigned)s->pack;
	const int32_t offset = 1 << (bits - 1);
	for (; i < n; i += per) {
		uint32_t w = 0;
		for (unsigned j = 0; j < per; j++) {
			const struct mq_qparams pg = p[(i + j) / group];
			int32_t q = pack_code(s, x[i + j], pg);
			w |= (uint32_t)(q + offset) << (j * bits);
			mq_lanes_add(L, i + j, x[i + j], mq_dequant(pg, q));
		}
		uint8_t *b = (uint8_t *)(out + i / per); /* little-endian on any host */
		b[0] = (uint8_t)w;
		b[1] = (uint8_t)(w >> 8);
		b[2] = (uint8_t)(w >> 16);
		b[3] = (uint8_t)(w >> 24);
	}
}

size_t mq_pack_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			    const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	(void)importance; /* round to nearest: every value on its own */
	struct mq_lanes L;
	mq_lanes_init(&L);
	pack_span(s, x, 0, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return (size_t)mq_scheme_bytes(s, n);
}

size_t mq_pack_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	return mq_pack_quantize_ref(s, x, n, group, p, importance, out, acc);
}

void mq_pack_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
			const struct mq_qparams *p, float *out)
{
	const unsigned bits = (unsigned)s->bits, per = (unsigned)s->pack;
	const uint32_t mask = (1u << bits) - 1;
	const int32_t offset = 1 << (bits - 1);
	const uint8_t *b = q;
	for (size_t i = 0; i < n; i += per) {
		const uint8_t *wb = b + i / per * 4;
		uint32_t w = (uint32_t)wb[0] | (uint32_t)wb[1] << 8 | (uint32_t)wb[2] << 16 | (uint32_t)wb[3] << 24;
		for (unsigned j = 0; j < per && i + j < n; j++)
			out[i + j] = mq_dequant(p[(i + j) / group], (int32_t)((w >> (j * bits)) & mask) - offset);
	}
}
