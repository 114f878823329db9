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
/* compressed-tensors pack-quantized (LOWBIT.md A.3): scales in the model's dtype, I32 words, I64 shape */
#define PACKED { .part = MQ_PART_DATA, .suffix = "weight_packed", .dtype_rule = MQ_PART_DTYPE_STORAGE, \
		 .shape_rule = MQ_PART_SHAPE_TENSOR }
#define SOURCE_SCALE { .part = MQ_PART_SCALE, .suffix = "weight_scale", .dtype_rule = MQ_PART_DTYPE_SOURCE, \
		       .shape_rule = MQ_PART_SHAPE_GROUPS }
#define PACKED_ZERO_POINT { .part = MQ_PART_ZERO_POINT, .suffix = "weight_zero_point", \
			    .dtype_rule = MQ_PART_DTYPE_FIXED, .dtype = MQ_DTYPE_I32, \
			    .shape_rule = MQ_PART_SHAPE_GROUPS_PACKED }
#define WEIGHT_SHAPE { .part = MQ_PART_SHAPE, .suffix = "weight_shape", .dtype_rule = MQ_PART_DTYPE_FIXED, \
		       .dtype = MQ_DTYPE_I64, .shape_rule = MQ_PART_SHAPE_NDIM }
static const struct mq_companion packed_outputs[] = { PACKED, SOURCE_SCALE, WEIGHT_SHAPE };
static const struct mq_companion packed_asym_outputs[] = { PACKED, SOURCE_SCALE, PACKED_ZERO_POINT, WEIGHT_SHAPE };
#define OUTPUTS(a) .outputs = (a), .n_outputs = (int)(sizeof(a) / sizeof((a)[0]))

#define GRAN_TENSOR_OR_CHANNEL (MQ_GRAN_BIT(MQ_GRAN_TENSOR) | MQ_GRAN_BIT(MQ_GRAN_CHANNEL))
#define GRAN_GROUP_OR_CHANNEL (MQ_GRAN_BIT(MQ_GRAN_GROUP) | MQ_GRAN_BIT(MQ_GRAN_CHANNEL))
#define PACKED_ROW(nm, hlp, b, sym, outs) { .name = nm, .help = hlp, .quant_dtype = "int" #b, .ct_type = "int", \
	.ct_format = "pack-quantized", .acts = MQ_ACTS_NONE, .bits = b, .symmetric = sym, \
	.float_format = MQ_FLOAT_NONE, .granularities = GRAN_GROUP_OR_CHANNEL, .select = MQ_SELECT_LINEAR, \
	.storage = MQ_DTYPE_I32, .pack = 32 / (b), .qmin = -(1 << ((b) - 1)), .qmax = (1 << ((b) - 1)) - 1, \
	.limit = FLT_MAX, OUTPUTS(outs), .params = mq_grid_params, .quantize_ref = mq_pack_quantize_ref, \
	.quantize = mq_pack_quantize, .quantize_half = mq_pack_quantize_half, .dequantize = mq_pack_dequantize, .fake = mq_pack_fake }
#define FP16_LIMIT 65519.99609375f /* the largest float32 that rounds to a finite f16 (65504) */

static const struct mq_scheme_traits rows[] = {
	[MQ_SCHEME_INT8] = { .name = "int8", .help = "symmetric", .quant_dtype = "int8", .ct_type = "int",
		.ct_format = "int-quantized", .acts = MQ_ACTS_INT8, .bits = 8, .symmetric = 1, .float_format = MQ_FLOAT_NONE, .granularities = GRAN_TENSOR_OR_CHANNEL,
		.select = MQ_SELECT_WEIGHTS, .storage = MQ_DTYPE_I8, .pack = 1, .qmin = -128, .qmax = 127,
		.limit = FLT_MAX, OUTPUTS(symmetric_outputs), .params = mq_grid_params,
		.quantize_ref = mq_int8_quantize_ref, .quantize = mq_int8_quantize, .quantize_half = mq_int8_quantize_half,
		.dequantize = mq_int8_dequantize, .fake = mq_int8_fake },
	[MQ_SCHEME_INT8_ASYM] = { .name = "int8-asym", .help = "with zero points", .quant_dtype = "int8",
		.ct_type = "int", .ct_format = "int-quantized", .acts = MQ_ACTS_INT8, .bits = 8, .symmetric = 0, .float_format = MQ_FLOAT_NONE,
		.granularities = GRAN_TENSOR_OR_CHANNEL, .select = MQ_SELECT_WEIGHTS, .storage = MQ_DTYPE_I8,
		.pack = 1, .qmin = -128, .qmax = 127, .limit = FLT_MAX, OUTPUTS(asymmetric_outputs),
		.params = mq_grid_params, .quantize_ref = mq_int8_quantize_ref, .quantize = mq_int8_quantize,
		.quantize_half = mq_int8_quantize_half, .dequantize = mq_int8_dequantize, .fake = mq_int8_fake },
	[MQ_SCHEME_FP16] = { .name = "fp16", .help = "casts", .quant_dtype = "float16", .ct_type = "float",
		.ct_format = "dense", .acts = MQ_ACTS_NONE, .bits = 16, .symmetric = 1, .float_format = MQ_FLOAT_FP16, .granularities = 0,
		.select = MQ_SELECT_FLOATS, .storage = MQ_DTYPE_F16, .pack = 1, .qmin = 0, .qmax = 0,
		.limit = FP16_LIMIT, OUTPUTS(cast_outputs), .params = mq_float_params,
		.quantize_ref = mq_f16_quantize_ref, .quantize = mq_f16_quantize, .dequantize = mq_f16_dequantize },
	[MQ_SCHEME_BF16] = { .name = "bf16", .help = "casts", .quant_dtype = "bfloat16", .ct_type = "float",
		.ct_format = "dense", .acts = MQ_ACTS_NONE, .bits = 16, .symmetric = 1, .float_format = MQ_FLOAT_BF16, .granularities = 0,
		.select = MQ_SELECT_FLOATS, .storage = MQ_DTYPE_BF16, .pack = 1, .qmin = 0, .qmax = 0,
		.limit = FLT_MAX, OUTPUTS(cast_outputs), .params = mq_float_params,
		.quantize_ref = mq_bf16_quantize_ref, .quantize = mq_bf16_quantize, .dequantize = mq_bf16_dequantize },
	[MQ_SCHEME_INT4] = PACKED_ROW("int4", "W4A16 in groups", 4, 1, packed_outputs),
	[MQ_SCHEME_INT4_ASYM] = PACKED_ROW("int4-asym", "W4A16 with zero points", 4, 0, packed_asym_outputs),
	[MQ_SCHEME_W8A16] = PACKED_ROW("w8a16", "int8 weight-only in groups", 8, 1, packed_outputs),
	[MQ_SCHEME_W8A16_ASYM] = PACKED_ROW("w8a16-asym", "int8 weight-only with zero points", 8, 0,
					    packed_asym_outputs),
	[MQ_SCHEME_FP8] = { .name = "fp8", .help = "float8 e4m3", .quant_dtype = "float8_e4m3fn", .ct_type = "float",
		.ct_format = "float-quantized", .acts = MQ_ACTS_FP8, .bits = 8, .symmetric = 1,
		.float_format = MQ_FLOAT_E4M3, .granularities = GRAN_TENSOR_OR_CHANNEL, .select = MQ_SELECT_WEIGHTS,
		.storage = MQ_DTYPE_F8_E4M3, .pack = 1, .qmin = 0, .qmax = 0, .limit = FLT_MAX,
		OUTPUTS(symmetric_outputs), .params = mq_fp8_params, .quantize_ref = mq_fp8_quantize_ref,
		.quantize = mq_fp8_quantize, .quantize_half = mq_fp8_quantize_half, .dequantize = mq_fp8_dequantize },
#ifdef MQ_TEST_DUMMY_SCHEME
	/* int8 on the narrow grid [-127, 127], with a plain scalar kernel and no fast one */
	{ .name = "int8-dummy", .help = "test only", .quant_dtype = "int8", .ct_type = "int",
		.ct_format = "int-quantized", .acts = MQ_ACTS_INT8, .bits = 8,
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

enum mq_granularity mq_scheme_granularity(const struct mq_scheme_traits *s, int per_tensor, int group_size)
{
	if (!s->granularities)
		return MQ_GRAN_NONE;
	if (per_tensor && (s->granularities & MQ_GRAN_BIT(MQ_GRAN_TENSOR)))
		return MQ_GRAN_TENSOR;
	if ((s->granularities & MQ_GRAN_BIT(MQ_GRAN_GROUP)) && group_size != MQ_GROUP_CHANNEL)
		return MQ_GRAN_GROUP;
	return MQ_GRAN_CHANNEL;
}

const char *mq_granularity_name(enum mq_granularity g)
{
	static const char *const names[] = { [MQ_GRAN_NONE] = "none", [MQ_GRAN_TENSOR] = "tensor",
					     [MQ_GRAN_CHANNEL] = "channel", [MQ_GRAN_GROUP] = "group" };
	return names[g];
}

enum mq_dtype mq_companion_dtype(const struct mq_scheme_traits *s, const struct mq_companion *c, enum mq_dtype src)
{
	switch (c->dtype_rule) {
	case MQ_PART_DTYPE_STORAGE: return s->storage;
	case MQ_PART_DTYPE_FIXED: return c->dtype;
	case MQ_PART_DTYPE_SOURCE: break;
	}
	return src == MQ_DTYPE_F16 || src == MQ_DTYPE_BF16 ? src : MQ_DTYPE_F32;
}

const struct mq_companion *mq_scheme_part(const struct mq_scheme_traits *s, enum mq_part part)
{
	for (int k = 0; k < s->n_outputs; k++)
		if (s->outputs[k].part == part)
			return &s->outputs[k];
	return NULL;
}

enum mq_dtype mq_scheme_scale_dtype(const struct mq_scheme_traits *s, enum mq_dtype src)
{
	const struct mq_companion *c = mq_scheme_part(s, MQ_PART_SCALE);
	return c ? mq_companion_dtype(s, c, src) : MQ_DTYPE_F32;
}

int mq_companion_shape(const struct mq_scheme_traits *s, const struct mq_companion *c, enum mq_granularity g,
		       uint64_t group, int ndim, const uint64_t *shape, uint64_t *out)
{
	switch (c->shape_rule) {
	case MQ_PART_SHAPE_TENSOR:
		memcpy(out, shape, (size_t)ndim * sizeof(*shape));
		if (ndim > 0)
			out[ndim - 1] /= (uint64_t)s->pack;
		return ndim;
	case MQ_PART_SHAPE_NDIM:
		out[0] = (uint64_t)ndim;
		return 1;
	case MQ_PART_SHAPE_GROUPS:
	case MQ_PART_SHAPE_GROUPS_PACKED:
		break;
	}
	MQ_ASSERT(g != MQ_GRAN_NONE);
	if (g == MQ_GRAN_TENSOR) {
		out[0] = 1;
		return 1;
	}
	uint64_t n_rows = ndim > 0 ? shape[0] : 1, cols = 1;
	for (int d = 1; d < ndim; d++)
		cols *= shape[d];
	MQ_ASSERT(g != MQ_GRAN_GROUP || (group > 0 && cols % group == 0));
	out[0] = n_rows;
	out[1] = g == MQ_GRAN_GROUP ? cols / group : 1;
	if (c->shape_rule == MQ_PART_SHAPE_GROUPS_PACKED)
		out[0] = (n_rows + (uint64_t)s->pack - 1) / (uint64_t)s->pack;
	return 2;
}

float mq_scale_round(enum mq_dtype d, float s)
{
	if (d == MQ_DTYPE_BF16)
		return mq_bf16_to_f32(mq_f32_to_bf16(s));
	if (d == MQ_DTYPE_F16)
		return mq_f16_to_f32(mq_f32_to_f16(s));
	return s;
}

size_t mq_scales_store(enum mq_dtype d, const struct mq_qparams *p, size_t n, void *out)
{
	unsigned char *o = out;
	if (d == MQ_DTYPE_F32) {
		for (size_t i = 0; i < n; i++) {
			uint32_t u = mq_f32_bits(p[i].scale);
			for (int k = 0; k < 4; k++)
				o[4 * i + (size_t)k] = (unsigned char)(u >> (8 * k));
		}
		return 4 * n;
	}
	MQ_ASSERT(d == MQ_DTYPE_F16 || d == MQ_DTYPE_BF16);
	for (size_t i = 0; i < n; i++) {
		uint16_t h = d == MQ_DTYPE_F16 ? mq_f32_to_f16(p[i].scale) : mq_f32_to_bf16(p[i].scale);
		o[2 * i] = (unsigned char)h;
		o[2 * i + 1] = (unsigned char)(h >> 8);
	}
	return 2 * n;
}

size_t mq_zero_points_store(const struct mq_scheme_traits *s, const struct mq_companion *c,
			    const struct mq_qparams *p, size_t n_rows, size_t groups, void *out)
{
	unsigned char *o = out;
	if (c->shape_rule != MQ_PART_SHAPE_GROUPS_PACKED) {
		MQ_ASSERT(mq_companion_dtype(s, c, MQ_DTYPE_F32) == MQ_DTYPE_I8);
		for (size_t i = 0; i < n_rows * groups; i++)
			o[i] = (unsigned char)(int8_t)p[i].zero_point;
		return n_rows * groups;
	}
	const size_t per = (size_t)s->pack, bits = (size_t)s->bits;
	MQ_ASSERT(n_rows % per == 0);
	for (size_t w = 0; w < n_rows / per; w++) {
		for (size_t g = 0; g < groups; g++) {
			uint32_t v = 0;
			for (size_t k = 0; k < per; k++)
				v |= (uint32_t)(p[(w * per + k) * groups + g].zero_point + (1 << (bits - 1))) << (k * bits);
			for (int b = 0; b < 4; b++)
				o[4 * (w * groups + g) + (size_t)b] = (unsigned char)(v >> (8 * b));
		}
	}
	return n_rows / per * groups * 4;
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

void mq_scheme_names_with(struct mq_buf *b, unsigned gran_bits)
{
	int n = 0, k = 0;
	for (int s = 0; s < N_ROWS; s++)
		n += (rows[s].granularities & gran_bits) != 0;
	for (int s = 0; s < N_ROWS; s++) {
		if (!(rows[s].granularities & gran_bits))
			continue;
		mq_buf_adds(b, k == 0 ? "" : k == n - 1 ? " or " : ", ");
		mq_buf_adds(b, rows[s].name);
		k++;
	}
}
