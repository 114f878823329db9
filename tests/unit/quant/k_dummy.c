/*
 * k_dummy: the kernel of the test-only scheme "int8-dummy" (its row is in
 * src/quant/scheme.c, under MQ_TEST_DUMMY_SCHEME): plain round to nearest on
 * the row's grid, one value at a time, with the error sums in the fixed order
 * of kernel.h. With the row, all a scheme needs (test_quant checks it).
 */
#include "kernel.h"

#include <stdint.h>

size_t mq_dummy_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			     const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	(void)importance; /* round to nearest */
	int8_t *q = out;
	struct mq_lanes L;
	mq_lanes_init(&L);
	for (size_t i = 0; i < n; i++) {
		const struct mq_qparams pg = p[i / group];
		long v = lrintf(x[i] * (1.0f / pg.scale)) + pg.zero_point;
		v = v < s->qmin ? s->qmin : v > s->qmax ? s->qmax : v;
		q[i] = (int8_t)v;
		mq_lanes_add(&L, i, x[i], mq_dequant(pg, (int32_t)v));
	}
	mq_lanes_end(&L, acc);
	return n;
}
