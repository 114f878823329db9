/*
 * manifest: one table of every input tensor, from a single .safetensors file
 * or a sharded model's model.safetensors.index.json.
 *
 * Rank 0 calls mq_manifest_load(), which opens the files, reads and checks
 * every header (and the index against the shards). It then packs the raw
 * headers (mq_manifest_pack); the other ranks rebuild the identical table
 * with mq_manifest_unpack(). No tensor data is read here.
 */
#ifndef MQ_MANIFEST_H
#define MQ_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "safetensors.h"
#include "status.h"

struct mq_source_file {
	char *path;          /* as opened: the folder of the model + name */
	char *name;          /* base name, as recorded in the output's provenance */
	uint64_t size;       /* bytes */
	uint64_t header_len; /* N */
	char *json;          /* header text, N bytes + NUL */
};

struct mq_tensor {
	char *name;          /* owned */
	enum mq_dtype dtype;
	int ndim;
	uint64_t shape[MQ_MAX_DIMS];
	int file;            /* index into files[] */
	uint64_t offset;     /* absolute byte offset of the data in that file */
	uint64_t nbytes;
};

struct mq_manifest {
	char *model_path;    /* the path the user gave */
	char *index_name;    /* base name of the shard index, or NULL */
	uint64_t index_size; /* its size in bytes */
	int n_files;
	struct mq_source_file *files;
	int n_tensors;
	struct mq_tensor *tensors; /* sorted by name (bytewise) */
};

int mq_manifest_load(const char *path, struct mq_manifest *m, struct mq_error *err);
void mq_manifest_release(struct mq_manifest *m);

/* Serialises the sources into one malloc'd blob for broadcast. */
int mq_manifest_pack(const struct mq_manifest *m, char **blob, size_t *len, struct mq_error *err);
/* Rebuilds the manifest from a blob made by mq_manifest_pack. */
int mq_manifest_unpack(const char *blob, size_t len, struct mq_manifest *m, struct mq_error *err);

/* Index of the tensor with this name, or -1. */
int mq_manifest_find(const struct mq_manifest *m, const char *name);

/* Sum of all tensors' data bytes. */
uint64_t mq_manifest_data_bytes(const struct mq_manifest *m);

#endif
