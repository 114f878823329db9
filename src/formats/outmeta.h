/*
 * outmeta: read back what an mq-dist output says about itself, without its
 * tensor data. Used to tell whether an existing output is up to date (its
 * fingerprint) and by the zoo report (its figures).
 */
#ifndef MQ_OUTMETA_H
#define MQ_OUTMETA_H

#include "status.h"

/*
 * The mq-dist metadata of a .safetensors or .pt file (the __metadata__ object,
 * or the archive's metadata record) as a cJSON object; *meta is NULL when the
 * file has none. The caller frees it with cJSON_Delete.
 */
struct cJSON;
int mq_output_metadata(const char *path, struct cJSON **meta, struct mq_error *err);

#endif
