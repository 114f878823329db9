/*
 * torch: PyTorch checkpoints written by torch.save (the zip format, torch
 * 1.6 and later), read and written without running any code from the file.
 *
 * Reading. Rank 0 calls mq_torch_read_raw(): it reads the ZIP directory and
 * data.pkl into one "raw header" blob (the record table and the pickle
 * bytes), which is broadcast like a safetensors header. Any rank then calls
 * mq_torch_parse(), a pure function of the blob and the file size: it runs
 * the restricted pickle reader (pickle.h), finds the state dict, and checks
 * every tensor against its storage record (dtype, record size = numel x
 * element size, and a view that stays inside the storage). Tensors may be
 * views (a storage offset, any non-negative strides) and may share storages.
 *
 * Writing (torch_write.c, the writer row). mq_torch_out_plan() lays out an
 * archive for the output tensors of a layout: archive/data.pkl (a protocol-2 pickle of an OrderedDict of
 * tensors, no floats, only what torch.load(weights_only=True) accepts in
 * torch 1.13 and 2.x), archive/data/<k> per tensor, archive/version, and
 * archive/mq_metadata.json (the same keys as the safetensors __metadata__,
 * padded with spaces to a length reserved at plan time). The folder is
 * always "archive", so the bytes do not depend on the output's file name.
 */
#ifndef MQ_TORCH_H
#define MQ_TORCH_H

#include <stdint.h>

#include "buf.h"
#include "dtype.h"
#include "bounds.h"
#include "layout.h"
#include "safetensors.h"
#include "status.h"
#include "zip.h"

#define MQ_TORCH_META_RECORD "mq_metadata.json"

/* The first bytes of a file: a torch zip, a legacy (pre-1.6) torch pickle, or neither. */
enum mq_torch_sniff { MQ_TORCH_NOT, MQ_TORCH_ZIP, MQ_TORCH_LEGACY };
enum mq_torch_sniff mq_torch_sniff(const unsigned char *head, uint64_t n);

struct mq_torch_tensor {
	char *name;                   /* owned; nested dict keys joined with '.' */
	enum mq_dtype dtype;
	int ndim;
	uint64_t shape[MQ_MAX_DIMS];
	uint64_t stride[MQ_MAX_DIMS]; /* elements */
	uint64_t offset;              /* absolute file offset of element 0 */
	uint64_t nbytes;              /* numel x element size */
	int contiguous;               /* row-major with no gaps: one plain read */
	char *record;                 /* owned: the storage record's name */
};

struct mq_torch_header {
	char *archive;                /* the folder of the records */
	int n_records;
	int n_tensors;
	struct mq_torch_tensor *tensors; /* in the pickle's order */
	int n_ignored;                /* entries of the checkpoint that are not tensors of the state dict */
	char *ignored;                /* the first of them, for a note */
	char *state_dict_key;         /* the key the state dict was found under, or NULL for the top level */
	int has_meta;                 /* archive/mq_metadata.json exists */
	uint64_t meta_offset, meta_size;
};

/* Rank 0: the raw header blob of the open file (malloc'd). */
int mq_torch_read_raw(const char *path, int fd, uint64_t file_size, char **raw, uint64_t *raw_len,
		      struct mq_error *err);
/* Pure: the tensors of a raw header blob. */
int mq_torch_parse(const char *path, const char *raw, uint64_t raw_len, uint64_t file_size,
		   struct mq_torch_header *h, struct mq_error *err);
void mq_torch_header_release(struct mq_torch_header *h);

/* ---- writing ---- */

struct mq_torch_out {
	struct mq_buf pickle;         /* data.pkl */
	int n_entries;                /* data.pkl, one per output tensor, version, metadata */
	struct mq_zip_entry *entries;
	int *entry_of_out;            /* plan out index -> entry */
	int meta_entry;
	uint64_t directory_offset, file_size;
};

/* Pure: the archive for n_out output tensors, with meta_len bytes reserved for the metadata. */
int mq_torch_out_plan(const struct mq_out_tensor *out, int n_out, uint64_t meta_len, struct mq_torch_out *t,
		      struct mq_error *err);
void mq_torch_out_release(struct mq_torch_out *t);

#endif
