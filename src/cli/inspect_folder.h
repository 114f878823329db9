/* inspect of a Hugging Face model folder (see inspect_folder.c). */
#ifndef MQ_INSPECT_FOLDER_H
#define MQ_INSPECT_FOLDER_H

#include <stddef.h>
#include <stdio.h>

#include "hf.h"
#include "manifest.h"
#include "status.h"

/*
 * Prints what folder f's config.json (its text, len bytes) says about the
 * quantization of m (the folder's weights), and checks the tensors against
 * it: MQ_ERR_INPUT when some are missing or have the wrong dtype or shape.
 */
int mq_inspect_folder(const struct mq_hf_folder *f, const struct mq_manifest *m, const char *config, size_t len,
		      FILE *out, struct mq_error *err);

#endif
