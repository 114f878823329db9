/*
 * The Hugging Face folder row of the writer table: the tensors in shards of
 * at most max_shard bytes of tensor data, each shard a safetensors file with
 * its own header and mq-dist's metadata object in its __metadata__. Tensors
 * go to shards in name order, a module's tensors always to the same one (a
 * module larger than max_shard gets a shard alone); within a shard they are
 * placed as the single-file layout places them (dtype size first, then
 * name), which keeps every tensor aligned to its element size. One shard is
 * model.safetensors, more are model-0000i-of-0000n.safetensors (the index
 * beside them is the pipeline's, with the folder's other files).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "writer.h"

#define PREFIX 8 /* bytes of the header length */

struct hf_state {
	int *order;         /* output tensors in placement order, shard by shard */
	int *first;         /* per shard: its first entry in order; first[n_files] = n_out */
	uint64_t *data_at;  /* per output tensor: its offset within its shard's data */
	uint64_t *reserve;  /* per shard: bytes kept for its header */
};

static const struct mq_out_tensor *sort_base;

static int by_name(const void *a, const void *b)
{
	return strcmp(sort_base[*(const int *)a].name, sort_base[*(const int *)b].name);
}

static int by_placement(const void *a, const void *b)
{
	const struct mq_out_tensor *x = &sort_base[*(const int *)a], *y = &sort_base[*(const int *)b];
	size_t sx = mq_dtype_size(x->dtype), sy = mq_dtype_size(y->dtype);
	if (sx != sy)
		return sx > sy ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* An upper bound of a tensor's header entry: its escaped name, dtype, shape and offsets. */
static uint64_t entry_bound(const struct mq_out_tensor *t)
{
	return 6 * (uint64_t)strlen(t->name) + 64 + 21 * (uint64_t)t->ndim + 2 * 21;
}

static void hf_release(struct mq_out_files *f)
{
	struct hf_state *s = f->state;
	if (s) {
		free(s->order);
		free(s->first);
		free(s->data_at);
		free(s->reserve);
		free(s);
	}
	for (int i = 0; f->names && i < f->n_files; i++)
		free(f->names[i]);
	free(f->names);
	f->state = NULL;
	f->names = NULL;
	mq_out_files_release(f);
}

/* Whether two tensor names belong to one module: the same name up to their last '.'. */
static int same_module(const char *a, const char *b)
{
	const char *da = strrchr(a, '.'), *db = strrchr(b, '.');
	size_t na = da ? (size_t)(da - a) : strlen(a), nb = db ? (size_t)(db - b) : strlen(b);
	return na == nb && memcmp(a, b, na) == 0;
}

/*
 * Cuts the name-ordered tensors into shards of at most max_shard bytes; a
 * module's tensors (P.weight_packed, P.weight_scale, ..., P.bias) never part,
 * so a module larger than max_shard gets a shard of its own. Returns the
 * number of shards.
 */
static int cut_shards(const struct mq_out_tensor *out, int n_out, const int *by, uint64_t max_shard, int *shard_of)
{
	int n = 0;
	uint64_t used = 0;
	for (int k = 0; k < n_out;) {
		int end = k + 1;
		uint64_t size = out[by[k]].end - out[by[k]].begin;
		while (end < n_out && same_module(out[by[k]].name, out[by[end]].name)) {
			size += out[by[end]].end - out[by[end]].begin;
			end++;
		}
		if (n == 0 || (used > 0 && (used >= max_shard || size > max_shard - used))) {
			n++;
			used = 0;
		}
		for (; k < end; k++)
			shard_of[by[k]] = n - 1;
		used += size;
	}
	return n ? n : 1;
}

static int shard_names(struct mq_out_files *f, struct mq_error *err)
{
	f->names = calloc((size_t)f->n_files, sizeof(*f->names));
	for (int i = 0; f->names && i < f->n_files; i++) {
		f->names[i] = malloc(48);
		if (!f->names[i])
			break;
		if (f->n_files == 1)
			snprintf(f->names[i], 48, "model.safetensors");
		else
			snprintf(f->names[i], 48, "model-%05d-of-%05d.safetensors", i + 1, f->n_files);
	}
	if (!f->names || !f->names[f->n_files - 1])
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	return 0;
}

/* Places each shard's tensors after its header's reservation. */
static void place(const struct mq_out_tensor *out, struct mq_out_files *f, uint64_t meta_reserve)
{
	struct hf_state *s = f->state;
	for (int i = 0; i < f->n_files; i++) {
		uint64_t bound = meta_reserve + 32;
		for (int k = s->first[i]; k < s->first[i + 1]; k++)
			bound += entry_bound(&out[s->order[k]]);
		s->reserve[i] = (bound + 7) & ~(uint64_t)7;
		uint64_t at = 0;
		for (int k = s->first[i]; k < s->first[i + 1]; k++) {
			int o = s->order[k];
			s->data_at[o] = at;
			f->pos[o] = PREFIX + s->reserve[i] + at;
			at += out[o].end - out[o].begin;
		}
		f->file_size[i] = PREFIX + s->reserve[i] + at;
	}
}

static int hf_layout(const struct mq_out_tensor *out, int n_out, uint64_t meta_reserve, uint64_t max_shard,
		     struct mq_out_files *f, struct mq_error *err)
{
	if (mq_out_files_alloc(f, n_out, err))
		return err->code;
	struct hf_state *s = calloc(1, sizeof(*s));
	int *by = malloc(((size_t)n_out + 1) * sizeof(int));
	f->state = s;
	if (!s || !by || !(s->order = malloc(((size_t)n_out + 1) * sizeof(int))) ||
	    !(s->data_at = calloc((size_t)n_out + 1, sizeof(uint64_t)))) {
		free(by);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	for (int k = 0; k < n_out; k++)
		by[k] = k;
	sort_base = out;
	qsort(by, (size_t)n_out, sizeof(int), by_name);
	f->n_files = cut_shards(out, n_out, by, max_shard ? max_shard : UINT64_MAX, f->file_of);
	free(by);
	free(f->file_size);
	f->file_size = calloc((size_t)f->n_files, sizeof(uint64_t));
	s->first = calloc((size_t)f->n_files + 1, sizeof(int));
	s->reserve = calloc((size_t)f->n_files, sizeof(uint64_t));
	if (!f->file_size || !s->first || !s->reserve || shard_names(f, err))
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	/* shard by shard, each in placement order */
	int at = 0;
	for (int i = 0; i < f->n_files; i++) {
		s->first[i] = at;
		for (int k = 0; k < n_out; k++)
			if (f->file_of[k] == i)
				s->order[at++] = k;
		sort_base = out;
		qsort(s->order + s->first[i], (size_t)(at - s->first[i]), sizeof(int), by_placement);
	}
	s->first[f->n_files] = at;
	f->meta_reserve = meta_reserve;
	place(out, f, meta_reserve);
	return 0;
}

/* One shard's first bytes: its header (the metadata, then its tensors' entries), framed to its reservation. */
static int shard_header(const struct mq_out_tensor *out, const struct mq_out_files *f, int i, const char *meta,
			size_t meta_len, struct mq_buf *b, struct mq_error *err)
{
	const struct hf_state *s = f->state;
	struct mq_buf h = MQ_BUF_INIT;
	mq_buf_adds(&h, "{\"__metadata__\":");
	mq_buf_add(&h, meta, meta_len);
	for (int k = s->first[i]; k < s->first[i + 1]; k++) {
		const struct mq_out_tensor *t = &out[s->order[k]];
		uint64_t at = s->data_at[s->order[k]];
		mq_buf_adds(&h, ",");
		mq_st_entry_json(&h, t, at, at + t->end - t->begin);
	}
	mq_buf_adds(&h, "}");
	int rc = mq_buf_ok(&h) ? mq_st_frame(b, h.data, h.len, s->reserve[i], err)
			       : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	mq_buf_release(&h);
	return rc;
}

static int hf_finish(const struct mq_out_files *f, const struct mq_out_tensor *out, const char *meta,
		     size_t meta_len, const uint32_t *crc, mq_write_fn write, void *ctx, struct mq_error *err)
{
	(void)crc;
	if (meta_len > f->meta_reserve)
		return mq_fail(err, MQ_ERR_INTERNAL, "metadata exceeds its reservation");
	for (int i = 0; i < f->n_files; i++) {
		struct mq_buf b = MQ_BUF_INIT;
		int rc = shard_header(out, f, i, meta, meta_len, &b, err);
		if (!rc)
			rc = write(ctx, i, 0, b.data, b.len, err);
		mq_buf_release(&b);
		if (rc)
			return rc;
	}
	return 0;
}

static const char *const hf_extensions[] = { "", NULL };

const struct mq_writer mq_writer_hf = {
	.name = "hf-folder",
	.extensions = hf_extensions,
	.folder = 1,
	.meta = MQ_META_OBJECT,
	.tensor_crcs = 0,
	.layout = hf_layout,
	.finish = hf_finish,
	.release = hf_release,
};
