/*
 * The torch archive row of the writer table (what torch.save writes, zip
 * stored, no compression): data.pkl, one record per output tensor, version
 * and mq-dist's metadata record, each 64-byte aligned, then the central
 * directory. The local headers carry each record's CRC-32, so they are
 * written last, once every tensor's CRC is known (the units send theirs).
 */
#include "torch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc.h"
#include "pickle.h"
#include "writer.h"

/* Pushes the tuple of ints v[0..n) (TUPLE1 to TUPLE3 for the short ones, as pickle does). */
static void put_tuple(struct mq_buf *b, const uint64_t *v, int n)
{
	if (n == 0) {
		mq_buf_add(b, ")", 1);
		return;
	}
	if (n > 3)
		mq_buf_add(b, "(", 1);
	for (int i = 0; i < n; i++)
		mq_pickle_put_int(b, (int64_t)v[i]);
	static const char tuple_n[] = { 0, (char)0x85, (char)0x86, (char)0x87 };
	mq_buf_add(b, n > 3 ? "t" : &tuple_n[n], 1);
}

/* An output tensor's name and index, to order the tensors by name. */
struct named {
	const char *name;
	int index;
};

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* data.pkl: OrderedDict of name -> _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()) */
static int build_pickle(const struct mq_out_tensor *out, int n_out, const int *order, struct mq_buf *b, struct mq_error *err)
{
	mq_buf_add(b, "\x80\x02", 2);
	mq_pickle_put_global(b, "collections", "OrderedDict");
	mq_buf_add(b, ")R", 2);
	for (int i = 0; i < n_out; i++) {
		const struct mq_out_tensor *o = &out[order[i]];
		const char *cls = mq_pickle_storage_class(o->dtype);
		if (!cls)
			return mq_fail(err, MQ_ERR_USAGE,
				"tensor '%s' has dtype %s, which a .pt file cannot hold for torch 1.13; write a .safetensors output instead",
				o->name, mq_dtype_name(o->dtype));
		if (i % 1000 == 0) /* SETITEMS in batches, as pickle does */
			mq_buf_add(b, i ? "u(" : "(", i ? 2 : 1);
		uint64_t stride[MQ_MAX_DIMS], numel = 1;
		for (int d = o->ndim - 1; d >= 0; d--) {
			stride[d] = numel;
			numel *= o->shape[d];
		}
		char key[24];
		snprintf(key, sizeof(key), "%d", i);
		mq_pickle_put_str(b, o->name);
		mq_pickle_put_global(b, "torch._utils", "_rebuild_tensor_v2");
		mq_buf_add(b, "((", 2);
		mq_pickle_put_str(b, "storage");
		mq_pickle_put_global(b, "torch", cls);
		mq_pickle_put_str(b, key);
		mq_pickle_put_str(b, "cpu");
		mq_pickle_put_int(b, (int64_t)numel);
		mq_buf_add(b, "tQ", 2);
		mq_pickle_put_int(b, 0);
		put_tuple(b, o->shape, o->ndim);
		put_tuple(b, stride, o->ndim);
		mq_buf_add(b, "\x89", 1);
		mq_pickle_put_global(b, "collections", "OrderedDict");
		mq_buf_add(b, ")RtR", 4);
	}
	if (n_out)
		mq_buf_add(b, "u", 1);
	mq_buf_add(b, ".", 1);
	return mq_buf_ok(b) ? 0 : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
}

int mq_torch_out_plan(const struct mq_out_tensor *out, int n_out, uint64_t meta_len, struct mq_torch_out *t,
		      struct mq_error *err)
{
	memset(t, 0, sizeof(*t));
	int n = n_out + 3;
	int *order = malloc(((size_t)n_out + 1) * sizeof(int));
	t->entries = calloc((size_t)n, sizeof(*t->entries));
	t->entry_of_out = malloc(((size_t)n_out + 1) * sizeof(int));
	if (!order || !t->entries || !t->entry_of_out) {
		free(order);
		mq_torch_out_release(t);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	t->n_entries = n;
	struct named *byname = malloc(((size_t)n_out + 1) * sizeof(*byname));
	if (!byname) {
		free(order);
		mq_torch_out_release(t);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	for (int i = 0; i < n_out; i++)
		byname[i] = (struct named){ out[i].name, i };
	qsort(byname, (size_t)n_out, sizeof(*byname), cmp_named);
	for (int i = 0; i < n_out; i++)
		order[i] = byname[i].index;
	free(byname);
	int rc = build_pickle(out, n_out, order, &t->pickle, err);
	for (int i = 0; !rc && i < n; i++) {
		char name[64];
		struct mq_zip_entry *e = &t->entries[i];
		if (i == 0) {
			snprintf(name, sizeof(name), "archive/data.pkl");
			e->size = t->pickle.len;
		} else if (i <= n_out) { /* storage key = position in name order */
			const struct mq_out_tensor *o = &out[order[i - 1]];
			snprintf(name, sizeof(name), "archive/data/%d", i - 1);
			e->size = o->end - o->begin;
			t->entry_of_out[order[i - 1]] = i;
		} else if (i == n_out + 1) {
			snprintf(name, sizeof(name), "archive/version");
			e->size = 2;
		} else {
			snprintf(name, sizeof(name), "archive/" MQ_TORCH_META_RECORD);
			e->size = meta_len;
			t->meta_entry = i;
		}
		if (!(e->name = strdup(name)))
			rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	free(order);
	if (!rc)
		mq_zip_layout(t->entries, n, &t->directory_offset, &t->file_size);
	else
		mq_torch_out_release(t);
	return rc;
}

void mq_torch_out_release(struct mq_torch_out *t)
{
	mq_buf_release(&t->pickle);
	mq_zip_entries_free(t->entries, t->n_entries);
	free(t->entry_of_out);
	memset(t, 0, sizeof(*t));
}

/* ---- the row of the writer table ---- */

static int pt_layout(const struct mq_out_tensor *out, int n_out, uint64_t meta_reserve, uint64_t max_shard,
			struct mq_out_files *f, struct mq_error *err)
{
	(void)max_shard; /* one file */
	if (mq_out_files_alloc(f, n_out, err))
		return err->code;
	f->meta_reserve = meta_reserve;
	struct mq_torch_out *t = calloc(1, sizeof(*t));
	if (!t)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	f->state = t;
	if (mq_torch_out_plan(out, n_out, meta_reserve, t, err))
		return err->code;
	for (int o = 0; o < n_out; o++)
		f->pos[o] = t->entries[t->entry_of_out[o]].data_offset;
	f->file_size[0] = t->file_size;
	return 0;
}

/* The local headers (with data.pkl, version and the metadata record after theirs), then the directory. */
static int pt_finish(const struct mq_out_files *f, const struct mq_out_tensor *out, const char *meta,
			size_t meta_len, const uint32_t *crc, mq_write_fn write, void *ctx, struct mq_error *err)
{
	(void)out; /* the header came whole from the pipeline */
	struct mq_torch_out *t = f->state;
	if (meta_len != t->entries[t->meta_entry].size) /* the pipeline pads it to its reservation */
		return mq_fail(err, MQ_ERR_INTERNAL, "the metadata record does not fill its reservation");
	const void *payload[3] = { t->pickle.data, "3\n", meta };
	int fixed[3] = { 0, t->n_entries - 2, t->meta_entry };
	for (int k = 0; k < 3; k++)
		t->entries[fixed[k]].crc = mq_crc32(0, payload[k], (size_t)t->entries[fixed[k]].size);
	for (int o = 0; o < t->n_entries - 3; o++) /* every entry but data.pkl, version and the metadata */
		t->entries[t->entry_of_out[o]].crc = crc[o];
	struct mq_buf b = MQ_BUF_INIT;
	int rc = 0;
	for (int i = 0; !rc && i < t->n_entries; i++) {
		const struct mq_zip_entry *e = &t->entries[i];
		b.len = 0;
		mq_zip_local_header(e, &b);
		for (int k = 0; k < 3; k++)
			if (fixed[k] == i)
				mq_buf_add(&b, payload[k], (size_t)e->size);
		rc = mq_buf_ok(&b) ? write(ctx, 0, e->header_offset, b.data, b.len, err)
				   : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	if (!rc) {
		b.len = 0;
		mq_zip_directory(t->entries, t->n_entries, t->directory_offset, &b);
		rc = mq_buf_ok(&b) ? write(ctx, 0, t->directory_offset, b.data, b.len, err)
				   : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	mq_buf_release(&b);
	return rc;
}

static void pt_release(struct mq_out_files *f)
{
	if (f->state)
		mq_torch_out_release(f->state);
	free(f->state);
	mq_out_files_release(f);
}

static const char *const pt_extensions[] = { ".pt", ".pth", ".bin", NULL };

const struct mq_writer mq_writer_torch = {
	.name = "pt",
	.extensions = pt_extensions,
	.meta = MQ_META_OBJECT,
	.tensor_crcs = 1,
	.layout = pt_layout,
	.finish = pt_finish,
	.release = pt_release,
};
