/*
 * scheme: the rows of the scheme table, and what is derived from them alone:
 * lookup by name, granularities, the output tensors' dtypes and shapes, the
 * --help list. The kernels are in k_*.c, the grid formulas in grid.c.
 */
#include "scheme.h"

#include <float.h>
#include <string.h>

#include "kernel.h"
#include "status.h"

/* The output tensors of a quantized tensor, data first (README, "Output tensors"). */
#define DATA { .part = MQ_PART_DATA, .dtype_rule = MQ_PART_DTYPE_STORAGE, .shape_rule = MQ_PART_SHAPE_TENSOR }
#define SCALE { .part = MQ_PART_SCALE, .suffix = "weight_scale", .dtype_rule = MQ_PART_DTYPE_FIXED, \
		.dtype = MQ_DTYPE_F32, .shape_rule = MQ_PART_SHAPE_GROUPS }
#define ZERO_POINT { .part = MQ_PART_ZERO_POINT, .suffix = "weight_zero_point", \
		     .dtype_rule = MQ_PART_DTYPE_STORAGE, .shape_rule = MQ_PART_SHAPE_GROUPS }
static const struct mq_companion symmetric_outputs[] = { DATA, SCALE };
static const struct mq_companion asymmetric_outputs[] = { DATA, SCALE, ZERO_POINT };
static const struct mq_companion cast_outputs[] = { DATA };
#define OUTPUTS(a) .outputs = (a), .n_outputs = (int)(sizeof(a) / sizeof((a)[0]))

#define GRAN_TENSOR_OR_CHANNEL (MQ_GRAN_BIT(MQ_GRAN_TENSOR) | MQ_GRAN_BIT(MQ_GRAN_CHANNEL))
#define FP16_LIMIT 65519.99609375f /* the largest float32 that rounds to a finite f16 (65504) */

static const struct mq_scheme_traits rows[] = {
	[MQ_SCHEME_INT8] = { .name = "int8", .help = "symmetric", .quant_dtype = "int8", .ct_type = "int",
		.bits = 8, .symmetric = 1, .float_format = MQ_FLOAT_NONE, .granularities = GRAN_TENSOR_OR_CHANNEL,
		.select = MQ_SELECT_WEIGHTS, .storage = MQ_DTYPE_I8, .pack = 1, .qmin = -128, .qmax = 127,
		.limit = FLT_MAX, OUTPUTS(symmetric_outputs), .params = mq_grid_params,
		.quantize_ref = mq_int8_quantize_ref, .quantize = mq_int8_quantize, .dequantize = mq_int8_dequantize },
	[MQ_SCHEME_INT8_ASYM] = { .name = "int8-asym", .help = "with zero points", .quant_dtype = "int8",
		.ct_type = "int", .bits = 8, .symmetric = 0, .float_format = MQ_FLOAT_NONE,
		.granularities = GRAN_TENSOR_OR_CHANNEL, .select = MQ_SELECT_WEIGHTS, .storage = MQ_DTYPE_I8,
		.pack = 1, .qmin = -128, .qmax = 127, .limit = FLT_MAX, OUTPUTS(asymmetric_outputs),
		.params = mq_grid_params, .quantize_ref = mq_int8_quantize_ref, .quantize = mq_int8_quantize,
		.dequantize = mq_int8_dequantize },
	[MQ_SCHEME_FP16] = { .name = "fp16", .help = "casts", .quant_dtype = "float16", .ct_type = "float",
		.bits = 16, .symmetric = 1, .float_format = MQ_FLOAT_FP16, .granularities = 0,
		.select = MQ_SELECT_FLOATS, .storage = MQ_DTYPE_F16, .pack = 1, .qmin = 0, .qmax = 0,
		.limit = FP16_LIMIT, OUTPUTS(cast_outputs), .params = mq_float_params,
		.quantize_ref = mq_f16_quantize_ref, .quantize = mq_f16_quantize, .dequantize = mq_f16_dequantize },
	[MQ_SCHEME_BF16] = { .name = "bf16", .help = "casts", .quant_dtype = "bfloat16", .ct_type = "float",
		.bits = 16, .symmetric = 1, .float_format = MQ_FLOAT_BF16, .granularities = 0,
		.select = MQ_SELECT_FLOATS, .storage = MQ_DTYPE_BF16, .pack = 1, .qmin = 0, .qmax = 0,
		.limit = FLT_MAX, OUTPUTS(cast_outputs), .params = mq_float_params,
		.quantize_ref = mq_bf16_quantize_ref, .quantize = mq_bf16_quantize, .dequantize = mq_bf16_dequantize },
#ifdef MQ_TEST_DUMMY_SCHEME
	/* int8 on the narrow grid [-127, 127], with a plain scalar kernel and no fast one */
	{ .name = "int8-dummy", .help = "test only", .quant_dtype = "int8", .ct_type = "int", .bits = 8,
		.symmetric = 1, .float_format = MQ_FLOAT_NONE, .granularities = GRAN_TENSOR_OR_CHANNEL,
		.select = MQ_SELECT_WEIGHTS, .storage = MQ_DTYPE_I8, .pack = 1, .qmin = -127, .qmax = 127,
		.limit = FLT_MAX, OUTPUTS(symmetric_outputs), .params = mq_grid_params,
		.quantize_ref = mq_dummy_quantize_ref, .quantize = NULL, .dequantize = mq_int8_dequantize },
#endif
};
#define N_ROWS ((int)(sizeof(rows) / sizeof(rows[0])))

int mq_scheme_count(void)
{
	return N_ROWS;
}

const struct mq_scheme_traits *mq_scheme_get(enum mq_scheme s)
{
	MQ_ASSERT((unsigned)s < (unsigned)N_ROWS);
	return &rows[s];
}

int mq_scheme_parse(const char *name, enum mq_scheme *out)
{
	for (int s = 0; s < N_ROWS; s++) {
		if (strcmp(rows[s].name, name) == 0) {
			*out = (enum mq_scheme)s;
			return 0;
		}
	}
	return -1;
}

enum mq_granularity mq_scheme_granularity(const struct mq_scheme_traits *s, int per_tensor)
{
	if (!s->granularities)
		return MQ_GRAN_NONE;
	return per_tensor ? MQ_GRAN_TENSOR : MQ_GRAN_CHANNEL;
}

const char *mq_granularity_name(enum mq_granularity g)
{
	static const char *const names[] = { [MQ_GRAN_NONE] = "none", [MQ_GRAN_TENSOR] = "tensor",
					     [MQ_GRAN_CHANNEL] = "channel" };
	return names[g];
}

enum mq_dtype mq_companion_dtype(const struct mq_scheme_traits *s, const struct mq_companion *c)
{
	return c->dtype_rule == MQ_PART_DTYPE_STORAGE ? s->storage : c->dtype;
}

int mq_companion_shape(const struct mq_scheme_traits *s, const struct mq_companion *c, enum mq_granularity g,
		       int ndim, const uint64_t *shape, uint64_t *out)
{
	if (c->shape_rule == MQ_PART_SHAPE_TENSOR) {
		memcpy(out, shape, (size_t)ndim * sizeof(*shape));
		if (ndim > 0)
			out[ndim - 1] /= (uint64_t)s->pack;
		return ndim;
	}
	MQ_ASSERT(g != MQ_GRAN_NONE);
	if (g == MQ_GRAN_TENSOR) {
		out[0] = 1;
		return 1;
	}
	out[0] = ndim > 0 ? shape[0] : 1;
	out[1] = 1;
	return 2;
}

/* Names of rows [from, to): "a", "a or b", "a, b or c". */
static void add_names(struct mq_buf *b, int from, int to)
{
	for (int k = from; k < to; k++) {
		mq_buf_adds(b, k == from ? "" : k == to - 1 ? " or " : ", ");
		mq_buf_adds(b, rows[k].name);
	}
}

void mq_scheme_help(struct mq_buf *b, enum mq_scheme dflt)
{
	for (int i = 0; i < N_ROWS;) {
		int j = i + 1;
		while (j < N_ROWS && i != (int)dflt && j != (int)dflt && strcmp(rows[j].help, rows[i].help) == 0)
			j++;
		mq_buf_adds(b, i ? ", " : "");
		add_names(b, i, j);
		mq_buf_addf(b, " (%s%s)", rows[i].help, i == (int)dflt ? ", default" : "");
		i = j;
	}
}

void mq_scheme_names(struct mq_buf *b)
{
	add_names(b, 0, N_ROWS);
}
