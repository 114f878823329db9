/*
 * layout: an output file's tensors as the writers see them: name, dtype,
 * shape, and where the bytes lie, relative to the start of the data. The
 * plan fills them; the writers (safetensors header, torch archive) only read
 * them, so they know nothing of how the plan was made.
 */
#ifndef MQ_LAYOUT_H
#define MQ_LAYOUT_H

#include <stdint.h>

#include "dtype.h"
#include "safetensors.h"

/* What an output tensor holds, of the input tensor it stems from. */
enum mq_role {
	MQ_ROLE_COPY, MQ_ROLE_WEIGHT, MQ_ROLE_SCALE, MQ_ROLE_ZERO_POINT, MQ_ROLE_INPUT_SCALE, MQ_ROLE_INPUT_ZERO_POINT,
	MQ_ROLE_SHAPE, /* the weight's shape as I64 values (pack-quantized weight_shape) */
};

struct mq_out_tensor {
	char *name;             /* owned */
	enum mq_dtype dtype;
	int ndim;
	uint64_t shape[MQ_MAX_DIMS];
	uint64_t begin, end;    /* relative to the data start */
	int tensor;             /* the plan tensor it stems from */
	enum mq_role role;
};

#endif
