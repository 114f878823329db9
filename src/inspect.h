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

/*
 * The mq-dist metadata of a .safetensors or .pt file (the __metadata__ object,
 * or the archive's metadata record) as a cJSON object; *meta is NULL when the
 * file has none. The caller frees it with cJSON_Delete.
 */
struct cJSON;
int mq_inspect_metadata(const char *path, struct cJSON **meta, struct mq_error *err);

#endif
