/*
 * method: how a layer's weights are quantized, one row per method. A row
 * says what the method needs from the calibration data before any of the
 * layer's rows is quantized, and whether its work can be cut into row chunks
 * that are quantized on their own. The pipeline's preparation phase
 * (pipeline/prepare.c) gathers what the rows ask for, once per layer on the
 * layer's owner rank, and hands every rank the result.
 *
 * Round to nearest needs nothing: each row (or group) is quantized from its
 * own range by the scheme's kernel. Methods that adapt the rounding to the
 * activations (GPTQ: XᵀX per layer; AWQ: column ranges) become rows here,
 * with their per-layer state prepared by that phase.
 */
#ifndef MQ_METHOD_H
#define MQ_METHOD_H

/* What a method asks of the calibration data, per layer (bits). */
enum mq_need {
	MQ_NEED_NONE = 0,
	MQ_NEED_COL_RANGE = 1 << 0, /* per input column: max |x| over the calibration rows */
	MQ_NEED_XTX = 1 << 1,       /* the input's Gram matrix XᵀX (in × in) */
	MQ_NEED_OUT_SUMS = 1 << 2,  /* output-space error sums of the result (Y = X Wᵀ) */
};

enum mq_method_id { MQ_METHOD_RTN, MQ_METHOD_GPTQ };

struct mq_method {
	const char *name;     /* "rtn" */
	unsigned needs;       /* enum mq_need bits */
	int row_units;        /* 1: a layer's row chunks are quantized independently (units of rows) */
};

extern const struct mq_method mq_method_rtn;
/* GPTQ: a layer's Hessian factor before its rows (built by its owner, sent to the ranks of its units). */
extern const struct mq_method mq_method_gptq;

const struct mq_method *mq_method_get(enum mq_method_id id);

/* The row named name, or NULL. */
const struct mq_method *mq_method_find(const char *name);

#endif
