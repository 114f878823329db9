/*
 * plan: a pure, deterministic function from (manifest, options, n_ranks) to
 * what happens to every tensor, the output layout, and who does what.
 *
 * Work is cut into units that do not depend on the rank count: a unit is one
 * chunk of rows (MQ_CHUNK_BYTES of source data, whole rows) for copied and
 * per-channel tensors, and the whole tensor for per-tensor scales. Every
 * number a unit produces (quantized bytes, error sums, chunk digests) is a
 * function of its own rows only, and rank 0 combines units in unit order, so
 * the output is byte-identical whatever n_ranks is. Units are assigned
 * longest-processing-time first, ties broken by name, so the assignment is
 * deterministic too. Every rank builds the same plan from the same manifest.
 */
#ifndef MQ_PLAN_H
#define MQ_PLAN_H

#include <stdint.h>

#include "calib.h"
#include "layout.h"
#include "manifest.h"
#include "config.h"
#include "status.h"

#define MQ_CHUNK_BYTES (16u << 20) /* rows per chunk = max(1, this / row bytes) */
/*
 * Source bytes per block. Round to nearest reads each block's bytes once from
 * memory (the hash) and then from cache (the range, the kernel), so its block
 * with its widened copy stays well inside a core's L2. GPTQ sweeps larger
 * blocks (its matrix products gain from them) and copies move 2 MiB at a time.
 */
#define MQ_BLOCK_BYTES (2u << 20)
#define MQ_RTN_BLOCK_BYTES (256u << 10)
#define MQ_PLAN_MAX_BYTES (1ull << 62) /* tensor data in or out: sizes and offsets never overflow */
/*
 * The arena's regions (mq_plan_block_regions, carved by pipeline/unit.c)
 * start on cache lines. The read-block heuristic counts a row's overhead as
 * MQ_ARENA_ROW_EXTRA.
 */
#define MQ_ARENA_ALIGN 64
#define MQ_ARENA_REGIONS 11
#define MQ_ARENA_ROW_EXTRA (8 + 3 * MQ_ARENA_ALIGN)

enum mq_action { MQ_ACT_KEEP, MQ_ACT_QUANT };

/* What one quantized tensor is stored as: its scheme and the granularity of its parameters. */
struct mq_spec {
	enum mq_scheme scheme;
	int per_tensor;                  /* one scale (and zero point) for the whole tensor */
	enum mq_granularity granularity; /* of the scheme's parameters */
	uint64_t group_size;             /* values per group with MQ_GRAN_GROUP, else 0 */
};
enum mq_calib_state { MQ_CALIB_NONE, MQ_CALIB_STATIC, MQ_CALIB_MISSING };

struct mq_plan_tensor {
	int src;                /* index in the manifest (tensors are in name order) */
	enum mq_action action;
	struct mq_spec q;       /* set for every tensor, meaningful where action == MQ_ACT_QUANT */
	char *reason;           /* owned, e.g. "default exclusion 'embed'" */
	uint64_t n_rows;        /* rows of the chunking: shape[0], or 1 for a scalar */
	uint64_t row_bytes;     /* source bytes per row */
	uint64_t row_elems;     /* elements per row */
	uint64_t chunk_rows;    /* rows per chunk */
	uint64_t n_chunks;      /* 0 for an empty tensor */
	uint64_t block_rows;    /* rows per read block (quantized tensors), within the budget */
	uint64_t row_groups;    /* parameter groups per row: 1, or row_elems / group_size */
	uint64_t row_align;     /* units and blocks start on a multiple of these rows (packed zero points) */
	uint64_t unit_chunks;   /* chunks per unit (more than 1 where chunks do not end on whole words) */
	int out_data, out_scale, out_zero_point; /* indices in out[], -1 if none */
	int out_input_scale, out_input_zero_point;
	int out_shape;          /* weight_shape: its values, written by rank 0 at the end (write.c) */
	enum mq_calib_state calib;
	struct mq_calib_info cinfo; /* what the calibration file holds for this layer */
	uint64_t calib_rows;    /* calibration rows used */
	int act_rank;           /* rank that runs this layer's activation observer, -1 if none */
	int gptq;               /* quantized by GPTQ (--method gptq, calibrated) */
	int gptq_rank;          /* the rank that builds its Hessian and factor (its owner), -1 if none */
	int gptq_wave;          /* its owner's n-th GPTQ layer: the wave the factor is built in */
	uint64_t gptq_bytes;    /* its Hessian and factor, and one read of its calibration inputs */
	uint64_t bytes_out;     /* all output bytes that stem from this tensor */
	int first_unit, n_units;
};

struct mq_unit {
	int tensor;             /* plan tensor */
	uint64_t chunk_begin, chunk_end; /* chunks [begin, end) */
	uint64_t row_begin, row_end;     /* rows [begin, end) */
	uint64_t cost;          /* weighted bytes */
	int rank;
};

struct mq_rank_load {
	int n_units;
	uint64_t bytes_in, bytes_out, cost;
	uint64_t gptq_bytes;    /* the largest GPTQ state it holds at once */
};

/*
 * A mixed-precision run's choice (pipeline/choose.c), owned by the run: the
 * candidates, and per manifest tensor the one it got and what each would
 * cost and give, measured on its weights.
 */
struct mq_plan_choice {
	int n_candidates;
	struct mq_spec spec[MQ_MAX_CANDIDATES];
	char name[MQ_MAX_CANDIDATES][48]; /* as --candidates spells them */
	int *chosen;            /* per tensor: a candidate, or -1 (not quantized) */
	uint64_t *bytes;        /* per tensor x candidate: its output bytes; UINT64_MAX where it does not fit */
	double *noise;          /* per tensor x candidate: the squared error, sum of (w - q)^2, or with --calib of the outputs */
	double *signal;         /* per tensor: sum of w^2 (or of the outputs Y^2) */
	int output_space;       /* --calib: the errors are of the layers' outputs over the calibration rows */
	uint64_t target;        /* the budget: bytes of tensor data in the whole output */
	uint64_t fixed_bytes;   /* of it, the tensors that are kept as they are */
	uint64_t chosen_bytes;  /* the chosen plan's tensor data */
	double error, lower_bound; /* its total error, and the least any choice within the budget can have */
	int n_items;            /* the knapsack's items (fused projections are one) */
	double floor;           /* --min-sqnr (NAN: none) */
	unsigned char *gate;    /* per tensor: 1 --min-sqnr moved it past its smallest candidate, 2 kept it as it is */
};

struct mq_plan {
	int n_ranks;
	const struct mq_plan_choice *mix; /* a mixed-precision plan's choice, NULL for a uniform one (not owned) */
	struct mq_spec q;                /* the run's default (from the options), which every quantized tensor gets today */
	int act_asymmetric;              /* input zero points (--act int8-asym) */
	int n_tensors;                   /* = manifest tensors */
	struct mq_plan_tensor *tensors;
	int n_out;
	struct mq_out_tensor *out;       /* layout order: dtype size desc, then name */
	int n_units;
	struct mq_unit *units;           /* in (tensor, chunk) order: the unit id */
	struct mq_rank_load *ranks;      /* n_ranks entries */
	int n_quantized;
	int n_calibrated, n_weights_only; /* layers with static calibration, and without (allowed) */
	int n_gptq;                      /* layers quantized by GPTQ */
	uint64_t bytes_in, bytes_out;    /* all tensor data, input and output */
	uint64_t arena_bytes;            /* tensor buffers per rank, within the budget */
	uint64_t gptq_block;             /* --block-size of GPTQ */
	uint64_t gptq_bytes;             /* the largest GPTQ layer's state, held beside the buffers */
	int *gptq_order;                 /* the n_gptq GPTQ layers (plan tensors) in the order they are swept */
};

#define MQ_GPTQ_X_BYTES (16u << 20) /* calibration inputs a GPTQ layer's Hessian takes per syrk */
/* Rows of calibration inputs a GPTQ layer reads at a time (conv: samples). */
uint64_t mq_plan_gptq_read_rows(const struct mq_plan_tensor *pt, int conv);
/* The output height and width of a Conv weight t over its calibration samples (plan_calib checked them). */
void mq_plan_conv_out(const struct mq_calib_info *ci, const struct mq_tensor *t, uint64_t *oh, uint64_t *ow);
/* Patch rows per calibration sample of a Conv weight t (oh * ow). */
uint64_t mq_plan_conv_patches(const struct mq_calib_info *ci, const struct mq_tensor *t);
/* plan_gptq.c, for plan.c: a GPTQ layer's state (its Hessian and one read of its inputs), the memory it holds back. */
uint64_t mq_plan_gptq_state_bytes(const struct mq_plan_tensor *pt, const struct mq_tensor *t);
/* Sets each GPTQ layer's gptq_bytes and *reserve, what the largest holds at once; an error naming it if that leaves no room. */
int mq_plan_gptq_reserve(struct mq_plan *p, const struct mq_manifest *m, uint64_t budget, uint64_t *reserve,
			 struct mq_error *err);
/* The ranks that build GPTQ layer t's Hessian, its owner first, into members (room for n_ranks). Returns their count. */
int mq_plan_gptq_group(const struct mq_plan *p, int t, int *members);
/* Unit id to rank, and its bytes to the rank's load (plan.c). */
void mq_plan_give(struct mq_plan *p, int id, int rank);
/* Owners, waves and the order of the GPTQ layers, and their units to ranks; adds their work to load. */
int mq_plan_gptq_assign(struct mq_plan *p, const struct mq_manifest *m, uint64_t *load, struct mq_error *err);

/*
 * Where a block of `rows` rows of a quantized tensor lies in the arena: the
 * source bytes, their float32 widening (the source itself for F32), the
 * quantized rows, the parameters of every group, the stored scales and zero
 * points, and for calibrated layers the dequantized rows. Offsets from the
 * arena's start, each on MQ_ARENA_ALIGN; end is the bytes the block needs.
 * The one formula: the plan budgets with it and unit.c carves with it.
 */
struct mq_block_regions {
	size_t src, x, q, params, scales, zero_points, what, xq, rtn, rtn_params, scratch, end;
};
void mq_plan_block_regions(const struct mq_plan *p, const struct mq_plan_tensor *pt, enum mq_dtype dt,
			   uint64_t rows, struct mq_block_regions *b);

/*
 * A mixed-precision plan: each quantized tensor with its chosen candidate's
 * spec (mix), or before the choice (mix NULL, with a target in o) a plan
 * for measuring them, its tensors chunked as any plan's. calib as for
 * mq_plan_build.
 */
int mq_plan_build_mixed(const struct mq_manifest *m, const struct mq_options *o, int n_ranks,
			const struct mq_calib_info *calib, const struct mq_plan_choice *mix, struct mq_plan *p,
			struct mq_error *err);
/* Whether q can store tensor t (plan tensor pt) as vLLM loads it, and what it would take of the output. */
int mq_plan_spec_fits(const struct mq_plan_tensor *pt, const struct mq_tensor *t, const struct mq_spec *q);
uint64_t mq_plan_spec_bytes(const struct mq_tensor *t, const struct mq_spec *q);

/* plan_select.c: tensor t's fate (README, "Selection") into *act, and the reason (malloc'd, NULL: out of memory). */
char *mq_plan_select(const struct mq_tensor *t, const struct mq_options *o, enum mq_action *act);
/* A malloc'd printf (NULL: out of memory). */
char *mq_plan_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* calib: per manifest tensor, what the calibration file holds (NULL without --calib). */
int mq_plan_build(const struct mq_manifest *m, const struct mq_options *o, int n_ranks,
		  const struct mq_calib_info *calib, struct mq_plan *p, struct mq_error *err);

/* The layer name of a weight (its name without ".weight"), malloc'd. */
char *mq_plan_layer_name(const char *weight);
void mq_plan_release(struct mq_plan *p);

#endif
