/*
 * manifest: one table of every input tensor, from a single .safetensors file,
 * a sharded model's model.safetensors.index.json, or a torch.save checkpoint
 * (.pt, .pth, .bin; shards of an index may be any of these). A file's format
 * is told by its first bytes.
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

enum mq_source_kind { MQ_SOURCE_SAFETENSORS, MQ_SOURCE_TORCH };

struct mq_source_file {
	char *path;          /* as opened: the folder of the model + name */
	char *name;          /* base name, as recorded in the output's provenance */
	enum mq_source_kind kind; /* from the first bytes of the file, not its name */
	uint64_t size;       /* bytes */
	uint64_t raw_len;
	char *raw;           /* the raw header, raw_len bytes + NUL: the safetensors JSON text,
	                        or the torch record table and pickle (torch.h) */
};

struct mq_tensor {
	char *name;          /* owned */
	enum mq_dtype dtype;
	int ndim;
	uint64_t shape[MQ_MAX_DIMS];
	int file;            /* index into files[] */
	uint64_t offset;     /* absolute byte offset of the data (element 0) in that file */
	uint64_t nbytes;     /* numel x element size */
	int contiguous;      /* row-major without gaps; otherwise a view read through stride[] */
	uint64_t stride[MQ_MAX_DIMS]; /* elements */
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
