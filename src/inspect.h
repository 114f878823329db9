/*
 * inspect: lists the tensors (name, dtype, shape, bytes, file) and the
 * metadata of a .safetensors file or a shard index, pretty-printing metadata
 * values that hold JSON. Rank 0 only; reads headers, never tensor data.
 */
#ifndef MQ_INSPECT_H
#define MQ_INSPECT_H

#include <stdio.h>

#include "status.h"

int mq_inspect(const char *path, FILE *out, struct mq_error *err);

#endif
