/*
 * writer: the output formats, one row each (safetensors and the torch
 * archive today). A row lays out the output's files for the output tensors
 * of a plan (where each tensor's bytes go), and, once every tensor's bytes
 * are written, writes what is left: the safetensors header, or the archive's
 * local headers, data.pkl, metadata record and directory. The pipeline only
 * knows "output tensor o lives in file f at byte x": a format of several
 * files (shards and an index) is one more row, not new branches.
 *
 * Rows never write on their own: finish() is given a write function, so the
 * same row writes through MPI-IO in a run and into memory in a test.
 */
#ifndef MQ_WRITER_H
#define MQ_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "layout.h"
#include "status.h"

/* Where an output's bytes go, as a row laid them out. */
struct mq_out_files {
	int n_files;               /* 1 for a file, the shards of a folder */
	char **names;              /* a folder's: per file, its name in the folder; NULL for a file */
	uint64_t *file_size;       /* per file */
	int *file_of;              /* per output tensor: its file */
	uint64_t *pos;             /* per output tensor: the offset of its first byte in its file */
	uint64_t meta_reserve;     /* bytes reserved for the metadata the pipeline hands to finish() */
	void *state;               /* the row's own (the torch archive's entries) */
};

/* What the metadata bytes given to finish() are. */
enum mq_meta_kind {
	MQ_META_HEADER, /* the whole safetensors header JSON: tensor entries and __metadata__ */
	MQ_META_OBJECT, /* the __metadata__ object alone (an archive's metadata record) */
};

/* Writes n bytes at byte pos of file `file` of the output. */
typedef int (*mq_write_fn)(void *ctx, int file, uint64_t pos, const void *p, size_t n, struct mq_error *err);

struct mq_writer {
	const char *name;                   /* "safetensors", "pt": in the fingerprint and the journal's identity */
	const char *const *extensions;      /* output names it writes, NULL-terminated, case-sensitive */
	int folder;                         /* writes a folder of files (the names in mq_out_files) */
	enum mq_meta_kind meta;             /* what finish() is given */
	int tensor_crcs;                    /* finish() needs each output tensor's CRC-32 */
	/*
	 * Pure, every rank: places n_out tensors with meta_reserve bytes kept for
	 * the metadata; a folder row cuts shards of at most max_shard bytes of
	 * tensor data (0: no limit), which file rows ignore.
	 */
	int (*layout)(const struct mq_out_tensor *out, int n_out, uint64_t meta_reserve, uint64_t max_shard,
		      struct mq_out_files *f, struct mq_error *err);
	/* Rank 0, after every tensor's bytes: the rest. crc: per output tensor (tensor_crcs rows only). */
	int (*finish)(const struct mq_out_files *f, const struct mq_out_tensor *out, const char *meta, size_t meta_len,
		      const uint32_t *crc, mq_write_fn write, void *ctx, struct mq_error *err);
	/* Frees what layout() made (also after a failed layout). */
	void (*release)(struct mq_out_files *f);
};

extern const struct mq_writer mq_writer_safetensors, mq_writer_torch, mq_writer_hf;

/* The row that writes path (by its extension), or NULL. */
const struct mq_writer *mq_writer_select(const char *path);
/* "a, b, c": every row's extensions, in table order (truncated to cap). */
void mq_writer_extensions(char *buf, size_t cap);
/* The extension of a path's last component, from its last '.' (not a leading one), or "". */
const char *mq_path_extension(const char *path);
/* The i-th row, NULL past the end (help text, tests). */
const struct mq_writer *mq_writer_get(int i);

/* A safetensors header entry of t with its data at [begin, end): "name":{"dtype":..,"shape":..,"data_offsets":..}. */
void mq_st_entry_json(struct mq_buf *b, const struct mq_out_tensor *t, uint64_t begin, uint64_t end);
/*
 * A safetensors file's first bytes into b: the 8-byte little-endian length
 * reserve, then the header's len bytes padded with spaces to reserve
 * (MQ_ERR_INTERNAL when longer: the reservation is a bound).
 */
int mq_st_frame(struct mq_buf *b, const char *header, size_t len, uint64_t reserve, struct mq_error *err);

/* Allocates the per-tensor arrays of one file of f (layout helpers of the rows). */
int mq_out_files_alloc(struct mq_out_files *f, int n_out, struct mq_error *err);
void mq_out_files_release(struct mq_out_files *f);

#endif
