/*
 * scheme: THE scheme table. One row answers every question about a scheme
 * (ggml's type_traits is the model): its names, bits, grid or float format,
 * storage, the tensors a quantized weight produces and their shapes, which
 * tensors it takes, and its functions (parameters of a group, the reference
 * and fast kernels, dequantization). The plan, the unit work, the metadata,
 * --help and the tests read the row; no code outside src/quant/ compares a
 * scheme with a constant.
 *
 * A new scheme is one row in scheme.c plus its kernel file (k_<name>.c); the
 * tests loop over the table, so the row is tested with no new test (see the
 * MQ_TEST_DUMMY_SCHEME row in scheme.c, which the unit tests build).
 *
 * Kernels are pure functions on caller-owned memory: no I/O, no allocation.
 * The rows are const and static: every rank reads the same table.
 */
#ifndef MQ_SCHEME_H
#define MQ_SCHEME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "dtype.h"
#include "quant.h"

/*
 * Index of a row. The named values are the rows code refers to by name (the
 * command line's default, tests); a row needs no enumerator of its own:
 * iterate with mq_scheme_count(), find one with mq_scheme_parse().
 */
enum mq_scheme {
	MQ_SCHEME_INT8,
	MQ_SCHEME_INT8_ASYM,
	MQ_SCHEME_FP16,
	MQ_SCHEME_BF16,
	MQ_SCHEME_INT4,
	MQ_SCHEME_INT4_ASYM,
	MQ_SCHEME_W8A16,
	MQ_SCHEME_W8A16_ASYM,
	MQ_SCHEME_FP8,
};

/* A float storage format, or none for an integer grid. */
enum mq_float_format { MQ_FLOAT_NONE, MQ_FLOAT_FP16, MQ_FLOAT_BF16, MQ_FLOAT_E4M3 };

/* Who a group of parameters covers. A scheme lists those it takes; a run picks one (--granularity). */
enum mq_granularity {
	MQ_GRAN_NONE,    /* no parameters at all (a cast) */
	MQ_GRAN_TENSOR,  /* one group: the whole tensor */
	MQ_GRAN_CHANNEL, /* one group per row */
	MQ_GRAN_GROUP,   /* groups of --group-size consecutive values of a row */
};
#define MQ_GRAN_BIT(g) (1u << (g))

/* Which tensors a scheme takes, before --include and --exclude (README, "Selection"). */
enum mq_select {
	MQ_SELECT_WEIGHTS, /* 2-D and 4-D float tensors named *.weight, minus the default exclusions */
	MQ_SELECT_FLOATS,  /* every float tensor of any shape and name, as model.to(dtype) */
	MQ_SELECT_LINEAR,  /* 2-D float tensors named *.weight ([out, in]), minus the default exclusions */
};

/* What a scheme does to a layer's input activations (compressed-tensors' input_activations). */
enum mq_acts {
	MQ_ACTS_NONE, /* weight-only (W4A16, W8A16): no activation parameters, even with --calib */
	MQ_ACTS_INT8, /* int8: static per-tensor parameters with --calib, else dynamic per token */
	MQ_ACTS_FP8,  /* fp8 e4m3: a static per-tensor scale with --calib, else dynamic per token */
};

/*
 * One output tensor a quantized tensor produces. Its name is the tensor's own
 * (suffix NULL), or the tensor's name with the trailing "weight" replaced by
 * the suffix ("P.weight" -> "P.weight_scale"). Its dtype is the scheme's
 * storage dtype or a fixed one. Its shape is the tensor's own (the last
 * dimension divided by pack), or one value per group: [rows, 1] per channel,
 * [1] per tensor.
 */
enum mq_part { MQ_PART_DATA, MQ_PART_SCALE, MQ_PART_ZERO_POINT, MQ_PART_SHAPE };
enum mq_part_dtype {
	MQ_PART_DTYPE_STORAGE, /* the scheme's storage dtype */
	MQ_PART_DTYPE_FIXED,   /* the companion's dtype */
	MQ_PART_DTYPE_SOURCE,  /* the quantized tensor's own dtype (F32, F16, BF16; F64 gives F32) */
};
enum mq_part_shape {
	MQ_PART_SHAPE_TENSOR,        /* the tensor's shape, the last dimension divided by pack */
	MQ_PART_SHAPE_GROUPS,        /* one value per group: [1], [rows, 1] or [rows, cols / group] */
	MQ_PART_SHAPE_GROUPS_PACKED, /* the same packed along the rows: [ceil(rows / pack), groups] */
	MQ_PART_SHAPE_NDIM,          /* [ndim]: the tensor's shape as values (weight_shape) */
};

struct mq_companion {
	enum mq_part part;
	const char *suffix;          /* NULL: the tensor's own name */
	enum mq_part_dtype dtype_rule;
	enum mq_dtype dtype;         /* MQ_PART_DTYPE_FIXED: this dtype */
	enum mq_part_shape shape_rule;
};

struct mq_scheme_traits;

/*
 * Parameters of one group from its range, the scale rounded to scale_dtype
 * (the dtype it is stored in: F32, F16 or BF16) before anything is derived
 * from it, so that codes, zero point and error sums use the stored value.
 */
typedef struct mq_qparams (*mq_params_fn)(const struct mq_scheme_traits *s, const struct mq_range *r,
					  enum mq_dtype scale_dtype);

/*
 * Quantizes n values x of one row in groups of `group` values (1 <= group,
 * n a multiple of group; group == n for one group per row), group k with
 * p[k], into out (caller-owned, mq_scheme_bytes(s, n) bytes), and adds the
 * row's error sums to acc: signal and noise by addition, max_abs by max, in
 * the fixed order of kernel.h, so that a fast kernel matches the reference
 * bit for bit. Returns the bytes written.
 * importance: an optional per-column weight of each value (n of them, may be
 * NULL) for activation-aware methods; round-to-nearest ignores it.
 */
typedef size_t (*mq_quant_fn)(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			      const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);

/*
 * As mq_quant_fn, for a row stored as 16-bit floats (x their bits, src MQ_DTYPE_BF16 or MQ_DTYPE_F16),
 * with no importance: the codes and error sums of the row widened to float32 and quantized, without
 * the widened copy.
 */
typedef size_t (*mq_quant_half_fn)(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
				   size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc);

/* Dequantizes n stored values q (groups as above) into out, the values the error sums saw. */
typedef void (*mq_dequant_fn)(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
			      const struct mq_qparams *p, float *out);

/*
 * One value x on the row's grid with parameters p, dequantized: bit for bit
 * what the row's kernels store for x and what its dequantize returns (the
 * column-at-a-time methods, GPTQ, quantize with it).
 */
typedef float (*mq_fake_fn)(const struct mq_scheme_traits *s, float x, struct mq_qparams p);

struct mq_scheme_traits {
	const char *name;            /* command line, output names, metadata "scheme": "int8" */
	const char *help;            /* --help note; neighbouring rows with the same note share it */
	const char *quant_dtype;     /* metadata quantization_dtype: "int8", "float16" */
	const char *ct_type;         /* compressed-tensors type: "int" | "float" */
	const char *ct_format;       /* compressed-tensors format: "int-quantized", "pack-quantized", ... */
	enum mq_acts acts;           /* the input activations */
	int bits;                    /* bits of one value */
	int symmetric;               /* 1: no zero point, and params reads only the range's absmax_bits */
	enum mq_float_format float_format; /* MQ_FLOAT_NONE: an integer grid [qmin, qmax] */
	unsigned granularities;      /* MQ_GRAN_BIT()s the scheme takes; 0: no parameters (scale 1) */
	enum mq_select select;       /* the tensors it takes by default */
	enum mq_dtype storage;       /* dtype of the quantized tensor: I8, F16, BF16 */
	int pack;                    /* values per storage element (1; 8 int4 or 4 int8 values per I32 word) */
	int qmin, qmax;              /* integer grid; 0, 0 for float formats */
	float limit;                 /* largest |x| accepted: larger values are a data error (fp16) */
	const struct mq_companion *outputs; /* the tensors a quantized tensor produces, data first */
	int n_outputs;
	mq_params_fn params;         /* range of one group -> parameters */
	mq_quant_fn quantize_ref;    /* the spec */
	mq_quant_fn quantize;        /* fast, bit for bit the reference (on any CPU: it checks); NULL: none */
	mq_quant_half_fn quantize_half; /* as quantize, on bfloat16 and fp16 rows as stored; NULL: widen them */
	mq_dequant_fn dequantize;
	mq_fake_fn fake;             /* integer grids: one value at a time; NULL: none (no GPTQ) */
};

/* Number of rows: valid indices are 0 .. mq_scheme_count() - 1. */
int mq_scheme_count(void);
/* The row of index s (asserted valid). */
const struct mq_scheme_traits *mq_scheme_get(enum mq_scheme s);
/* Returns 0 and sets *out, or -1 for an unknown name. */
int mq_scheme_parse(const char *name, enum mq_scheme *out);

/* --group-size channel: one group per row on a scheme that takes groups. */
#define MQ_GROUP_CHANNEL (-1)
/* The group size of a scheme that takes groups when --group-size is not given. */
#define MQ_GROUP_DEFAULT 128

/*
 * The granularity of a run of s: MQ_GRAN_NONE for a scheme without
 * parameters; tensor with per_tensor; group where s takes groups and
 * group_size is not MQ_GROUP_CHANNEL (0: the default size); else channel.
 */
enum mq_granularity mq_scheme_granularity(const struct mq_scheme_traits *s, int per_tensor, int group_size);
/* "none", "tensor", "channel", "group". */
const char *mq_granularity_name(enum mq_granularity g);

/* Bytes that n values take in storage. */
static inline uint64_t mq_scheme_bytes(const struct mq_scheme_traits *s, uint64_t n)
{
	return n / (uint64_t)s->pack * mq_dtype_size(s->storage);
}

/* The dtype of output c of s for a tensor of dtype src. */
enum mq_dtype mq_companion_dtype(const struct mq_scheme_traits *s, const struct mq_companion *c, enum mq_dtype src);
/* The companion of s for part, or NULL. */
const struct mq_companion *mq_scheme_part(const struct mq_scheme_traits *s, enum mq_part part);
/* The dtype s stores its scales in for a tensor of dtype src (F32 when it has no scale). */
enum mq_dtype mq_scheme_scale_dtype(const struct mq_scheme_traits *s, enum mq_dtype src);
/*
 * The shape of output c of a tensor of shape[ndim] quantized by s at
 * granularity g (group: values per group, for MQ_GRAN_GROUP), into out (room
 * for max(ndim, 2) values). Returns its ndim.
 */
int mq_companion_shape(const struct mq_scheme_traits *s, const struct mq_companion *c, enum mq_granularity g,
		       uint64_t group, int ndim, const uint64_t *shape, uint64_t *out);

/* s rounded to nearest even in dtype d (F32: s itself; F16, BF16), as a float32. */
float mq_scale_round(enum mq_dtype d, float s);

/* The scales of n parameters in dtype d (F32, F16 or BF16), little-endian, into out. Returns the bytes. */
size_t mq_scales_store(enum mq_dtype d, const struct mq_qparams *p, size_t n, void *out);
/*
 * The zero points of rows x groups parameters (row-major) as s's zero-point
 * companion c stores them, into out: one I8 per group, or (GROUPS_PACKED)
 * offset by 2^(bits-1) and packed along the rows, row k of a group at bit
 * (k % pack) * bits of word (k / pack, group), little-endian; rows a multiple
 * of pack. Returns the bytes.
 */
size_t mq_zero_points_store(const struct mq_scheme_traits *s, const struct mq_companion *c,
			    const struct mq_qparams *p, size_t rows, size_t groups, void *out);

/* Quantizes with the row's fast kernel, or its reference where it has none (arguments as mq_quant_fn). */
static inline size_t mq_scheme_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
					const struct mq_qparams *p, const float *importance, void *out,
					struct mq_err_acc *acc)
{
	return (s->quantize ? s->quantize : s->quantize_ref)(s, x, n, group, p, importance, out, acc);
}

/*
 * Folds n values into r as s's parameters need them (arguments and result as
 * mq_range_update): max |x| alone for a symmetric scheme, whose params reads
 * nothing else (mq_range_update_abs), the whole range otherwise.
 */
static inline int mq_scheme_range_update(const struct mq_scheme_traits *s, struct mq_range *r, const float *x, size_t n,
					 size_t *bad)
{
	return (s->symmetric ? mq_range_update_abs : mq_range_update)(r, x, n, bad);
}

/* As mq_scheme_range_update, on a row of 16-bit floats (src BF16 or F16) as stored (x their bits). */
static inline int mq_scheme_range_update_half(const struct mq_scheme_traits *s, struct mq_range *r, const uint16_t *x,
					      enum mq_dtype src, size_t n, size_t *bad)
{
	return (s->symmetric ? mq_range_update_abs_half : mq_range_update_half)(r, x, src, n, bad);
}

/*
 * --help's list of the schemes: "int8 (symmetric, default), int8-asym (with
 * zero points), fp16 or bf16 (casts)": each row's name and note, neighbours
 * with the same note listed together, dflt marked as the default.
 */
void mq_scheme_help(struct mq_buf *b, enum mq_scheme dflt);
/* Every row's name: "int8, int8-asym, fp16 or bf16". */
void mq_scheme_names(struct mq_buf *b);
/* The names of the rows that take any of the granularities gran_bits (MQ_GRAN_BIT()s), as above. */
void mq_scheme_names_with(struct mq_buf *b, unsigned gran_bits);

/*
 * "avx512", "avx2" or "scalar": the fast kernels' path on this CPU
 * (mq_dtype_simd, core/dtype.h). AVX2 and F16C are required for "avx2",
 * AVX-512 F, BW, VL and DQ besides for "avx512"; MQ_NO_SIMD set (to anything)
 * in the environment forces "scalar", MQ_SIMD=avx2 (or scalar) caps the path.
 * Read once, on first use, and cached in a static: the layer's only global
 * state, written before any kernel runs (the answer is the same for every
 * caller, so a race on the first call is benign; mq_dtype_simd_cap, for tests
 * and benchmarks, changes it while no kernel runs). Every path writes the
 * same bits.
 */
const char *mq_quant_kernel_name(void);

#endif
