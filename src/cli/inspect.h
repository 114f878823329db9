/*
 * inspect: what a file holds, read from its headers only (never tensor data),
 * on rank 0. For a model file (.safetensors, a shard index, a torch.save
 * archive): a summary (tensors, dtypes, sizes; the scheme, layers, compression
 * and aggregate SQNR of an mq-dist output), the tensor table (strided views
 * marked), then the metadata, whose JSON values are shown in full only with
 * --verbose; or, with --json, all of it as one JSON document. For an HDF5
 * calibration file: each layer's activation statistics (calib.c).
 */
#ifndef MQ_INSPECT_H
#define MQ_INSPECT_H

#include <stdio.h>

#include "status.h"

struct mq_options;

/*
 * The inspect command for o->input. Options that apply to the other kind of
 * file (--observer, --act, --calib-samples for a model; --verbose, --json for
 * a calibration file) are a usage error, found before anything is printed.
 */
int mq_inspect(const struct mq_options *o, FILE *out, struct mq_error *err);


#endif
