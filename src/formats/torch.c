#include "torch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "pickle.h"

#define RAW_MAGIC "MQT1"
#define MAX_NESTING 16

/* The keys under which checkpoints commonly keep their state dict, looked up in this order. */
static const char *const state_dict_keys[] = { "state_dict", "model_state_dict", "model", "module" };

enum mq_torch_sniff mq_torch_sniff(const unsigned char *head, uint64_t n)
{
	if (n >= 4 && memcmp(head, "PK\x03\x04", 4) == 0)
		return MQ_TORCH_ZIP;
	/* the legacy format starts with a protocol-2 pickle of a LONG1 magic number */
	if (n >= 4 && head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a && head[3] == 0x0a)
		return MQ_TORCH_LEGACY;
	return MQ_TORCH_NOT;
}

/* ---- reading: the raw header blob ---- */

static int has_prefix(const char *s, const char *prefix, size_t n)
{
	return strncmp(s, prefix, n) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The archive folder (dir_len bytes of e[0]'s name, with its '/') that every
 * record must lie in, and the index of its data.pkl (-1 if none); refuses a
 * TorchScript archive.
 */
static int check_folder(const char *path, const struct mq_zip_entry *e, int n, size_t *dir_len, int *pkl,
			struct mq_error *err)
{
	const char *slash = n ? strchr(e[0].name, '/') : NULL;
	*dir_len = slash ? (size_t)(slash - e[0].name) + 1 : 0;
	*pkl = -1;
	if (n == 0)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': an empty ZIP archive, not a torch.save checkpoint", path);
	if (!slash || *dir_len == 1)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': record '%s' is not in a folder; a torch.save archive keeps its records in one folder",
			       path, e[0].name);
	for (int i = 0; i < n; i++) {
		const char *rest = e[i].name + *dir_len;
		if (!has_prefix(e[i].name, e[0].name, *dir_len))
			return mq_fail(err, MQ_ERR_INPUT, "'%s': record '%s' is outside the archive folder '%.*s'; torch.load refuses such files too",
				       path, e[i].name, (int)*dir_len, e[0].name);
		if (strcmp(rest, "constants.pkl") == 0)
			return mq_fail(err, MQ_ERR_INPUT,
				"'%s': a TorchScript archive (torch.jit.save), not a state dict; load it in torch and save model.state_dict() with torch.save",
				path);
		if (strcmp(rest, "data.pkl") == 0)
			*pkl = i;
	}
	return 0;
}

/* Refuses two records of the same name. */
static int check_unique(const char *path, const struct mq_zip_entry *e, int n, struct mq_error *err)
{
	char **names = malloc(((size_t)n + 1) * sizeof(char *));
	int rc = 0;
	if (!names)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; i < n; i++)
		names[i] = e[i].name;
	qsort(names, (size_t)n, sizeof(char *), cmp_str);
	for (int i = 1; !rc && i < n; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			rc = mq_fail(err, MQ_ERR_INPUT, "'%s': record '%s' appears twice", path, names[i]);
	free(names);
	return rc;
}

/* data.pkl (e[pkl], or pkl < 0 for none) must exist, be stored uncompressed and fit MQ_TORCH_MAX_PICKLE. */
static int check_pickle_record(const char *path, const struct mq_zip_entry *e, int pkl, size_t dir_len,
			       struct mq_error *err)
{
	if (pkl < 0)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': no '%.*sdata.pkl' record; not a torch.save checkpoint", path,
			       (int)dir_len, e[0].name);
	if (e[pkl].method != 0)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': record '%s' is compressed (method %u); torch.save stores records uncompressed: re-save the file with torch.save",
			       path, e[pkl].name, e[pkl].method);
	if (e[pkl].size > MQ_TORCH_MAX_PICKLE)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': data.pkl is %llu bytes, more than the limit of mq-dist (%llu MiB, MQ_TORCH_MAX_PICKLE in src/core/bounds.h); a state dict's pickle is far smaller: the file is corrupt or holds more than tensors",
			path, (unsigned long long)e[pkl].size, (unsigned long long)(MQ_TORCH_MAX_PICKLE >> 20));
	return 0;
}

/* Appends the bytes of record pkl (data.pkl) to b, read from the file. */
static int add_pickle(const char *path, int fd, const struct mq_zip_entry *pkl, struct mq_buf *b,
		      struct mq_error *err)
{
	int rc = 0;
	char *tmp = calloc(1, (size_t)pkl->size + 1);
	if (!tmp)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	if (mq_pread_full(fd, tmp, (size_t)pkl->size, pkl->data_offset, NULL))
		rc = mq_fail(err, MQ_ERR_INPUT, "'%s': cannot read data.pkl: %s", path,
			     errno == 0 ? "unexpected end of file" : strerror(errno));
	mq_buf_add(b, tmp, (size_t)pkl->size);
	free(tmp);
	return rc;
}

/* The raw header blob into b: RAW_MAGIC, the record table, then data.pkl (record pkl) with its length. */
static int pack_raw(const char *path, int fd, const struct mq_zip_entry *e, int n, int pkl, struct mq_buf *b,
		    struct mq_error *err)
{
	mq_buf_add(b, RAW_MAGIC, 4);
	mq_buf_add_u64(b, (uint64_t)n);
	for (int i = 0; i < n; i++) {
		mq_buf_add_u64(b, e[i].data_offset);
		mq_buf_add_u64(b, e[i].size);
		mq_buf_add_u64(b, e[i].method);
		mq_buf_add_u64(b, strlen(e[i].name));
		mq_buf_add(b, e[i].name, strlen(e[i].name));
	}
	mq_buf_add_u64(b, e[pkl].size);
	int rc = add_pickle(path, fd, &e[pkl], b, err);
	if (!rc && !mq_buf_ok(b))
		rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	return rc;
}

int mq_torch_read_raw(const char *path, int fd, uint64_t file_size, char **raw, uint64_t *raw_len,
		      struct mq_error *err)
{
	struct mq_zip_entry *e;
	int n, rc = mq_zip_read(path, fd, file_size, &e, &n, err);
	if (rc)
		return rc;
	size_t dir_len;
	int pkl;
	struct mq_buf b = MQ_BUF_INIT;
	rc = check_folder(path, e, n, &dir_len, &pkl, err);
	if (!rc)
		rc = check_unique(path, e, n, err);
	if (!rc)
		rc = check_pickle_record(path, e, pkl, dir_len, err);
	if (!rc)
		rc = pack_raw(path, fd, e, n, pkl, &b, err);
	mq_zip_entries_free(e, n);
	if (rc) {
		mq_buf_release(&b);
		return rc;
	}
	size_t len;
	*raw = mq_buf_detach(&b, &len);
	*raw_len = len;
	return 0;
}

/* ---- parsing the blob ---- */

struct record {
	const char *name; /* points into the blob (not NUL-terminated) */
	uint64_t name_len, offset, size, method;
};

static int cmp_record(const void *a, const void *b)
{
	const struct record *x = a, *y = b;
	uint64_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, (size_t)n);
	return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

struct parse {
	const char *path;
	struct mq_pickle pk;
	struct record *rec;
	uint64_t n_rec;
	const char *dir;      /* archive folder with its '/' */
	size_t dir_len;
	struct mq_torch_header *h;
	int cap;
	unsigned char *seen;  /* per pickle object: a dict already flattened */
	uint64_t file_size;
	struct mq_error *err;
};

static const struct record *find_record(const struct parse *s, const char *name, size_t len)
{
	struct record key = { name, len, 0, 0, 0 };
	return bsearch(&key, s->rec, (size_t)s->n_rec, sizeof(*s->rec), cmp_record);
}

static int str_is(const struct parse *s, const struct mq_pk_obj *o, const char *v)
{
	return o->kind == MQ_PK_STR && o->len == strlen(v) && memcmp(s->pk.data + o->str, v, o->len) == 0;
}

/* The value of a dict's string key, or -1. */
static int dict_get(const struct parse *s, const struct mq_pk_obj *d, const char *key)
{
	for (int i = 0; i + 1 < d->n_items; i += 2)
		if (str_is(s, &s->pk.obj[d->items[i]], key))
			return d->items[i + 1];
	return -1;
}

static int dict_has_tensor(const struct parse *s, const struct mq_pk_obj *d)
{
	for (int i = 1; i < d->n_items; i += 2)
		if (s->pk.obj[d->items[i]].kind == MQ_PK_TENSOR)
			return 1;
	return 0;
}

static void note_ignored(struct parse *s, const char *name)
{
	if (s->h->n_ignored++ == 0)
		s->h->ignored = strdup(name);
}

/* A tensor of the state dict on its way into the header: its view, its storage and the storage's record. */
struct view {
	const char *name;
	const struct mq_pk_tensor *pt;
	const struct mq_pk_obj *st;   /* its MQ_PK_STORAGE: dtype, numel (i) and key */
	size_t es;                    /* element size */
	char *rname;                  /* the storage record's name, owned until the tensor takes it */
	size_t rlen;                  /* its length, NUL bytes of the key included */
	const struct record *r;       /* that record, or NULL */
	uint64_t numel;               /* of the view */
	int overflow;                 /* numel overflowed */
};

/* The name of a storage's record, <archive>/data/<key> (malloc'd; *len counts a NUL inside the key). */
static char *storage_record_name(const struct parse *s, const struct mq_pk_obj *st, size_t *len)
{
	size_t klen = st->len, rlen = s->dir_len + 5 + klen;
	char *rname = malloc(rlen + 1);
	if (!rname)
		return NULL;
	memcpy(rname, s->dir, s->dir_len);
	memcpy(rname + s->dir_len, "data/", 5);
	memcpy(rname + s->dir_len + 5, s->pk.data + st->str, klen);
	rname[rlen] = '\0';
	*len = rlen;
	return rname;
}

/* The tensor count, then the storage's record: present, stored, and as large as the storage; then the shape. */
static int check_storage(const struct parse *s, const struct view *v)
{
	int storage_overflow = (uint64_t)v->st->i > UINT64_MAX / v->es;
	uint64_t storage_bytes = storage_overflow ? 0 : (uint64_t)v->st->i * v->es;
	if (s->h->n_tensors == MQ_MAX_TENSORS)
		return mq_fail(s->err, MQ_ERR_INPUT,
			"'%s': the state dict holds more than %d tensors, the limit of mq-dist (MQ_MAX_TENSORS in src/core/bounds.h); the file is corrupt, or a model beyond that limit needs a rebuild with a larger one",
			s->path, MQ_MAX_TENSORS);
	if (strlen(v->rname) != v->rlen)
		return mq_fail(s->err, MQ_ERR_INPUT, "'%s': tensor '%s': its storage key holds a NUL byte", s->path,
			       v->name);
	if (!v->r)
		return mq_fail(s->err, MQ_ERR_INPUT, "'%s': tensor '%s': its storage record '%s' is missing", s->path,
			       v->name, v->rname);
	if (v->r->method != 0)
		return mq_fail(s->err, MQ_ERR_INPUT, "'%s': record '%s' is compressed; torch.save stores records uncompressed: re-save the file with torch.save",
			       s->path, v->rname);
	if (storage_overflow || storage_bytes != v->r->size) {
		char need[32];
		if (storage_overflow)
			snprintf(need, sizeof(need), "more than 2^64");
		else
			snprintf(need, sizeof(need), "%llu", (unsigned long long)storage_bytes);
		return mq_fail(s->err, MQ_ERR_INPUT,
			"'%s': tensor '%s': record '%s' holds %llu bytes, but its storage of %lld %s elements needs %s; the file is truncated or corrupt",
			s->path, v->name, v->rname, (unsigned long long)v->r->size, (long long)v->st->i,
			mq_dtype_name(v->st->dtype), need);
	}
	if (v->overflow || v->numel > UINT64_MAX / v->es)
		return mq_fail(s->err, MQ_ERR_INPUT,
			"'%s': tensor '%s': its shape overflows (%d dimensions, more than 2^64 bytes of %s); the file is corrupt",
			s->path, v->name, v->pt->ndim, mq_dtype_name(v->st->dtype));
	return 0;
}

/* The storage index of the last element a view of at least one element reads, or UINT64_MAX past 64 bits. */
static uint64_t view_last(const struct mq_pk_tensor *pt)
{
	uint64_t last = pt->offset;
	for (int d = 0; d < pt->ndim; d++) {
		uint64_t span = pt->shape[d] - 1;
		if (pt->stride[d] && span > (UINT64_MAX - last) / pt->stride[d])
			return UINT64_MAX;
		last += span * pt->stride[d];
	}
	return last;
}

/* The view stays inside its storage, and (strides that repeat elements) needs no more bytes than the file. */
static int check_view(const struct parse *s, const struct view *v)
{
	const struct mq_pk_tensor *pt = v->pt;
	if (v->numel && view_last(pt) >= (uint64_t)v->st->i)
		return mq_fail(s->err, MQ_ERR_INPUT,
			"'%s': tensor '%s': its view (storage offset %llu, with its sizes and strides) reads past the end of record '%s' (%lld elements); the file is corrupt",
			s->path, v->name, (unsigned long long)pt->offset, v->rname, (long long)v->st->i);
	/* inside its storage, a view is larger than the file only with strides that repeat elements */
	if (v->numel * v->es > s->file_size)
		return mq_fail(s->err, MQ_ERR_INPUT,
			"'%s': tensor '%s': its view of record '%s' (%llu elements, strides that repeat elements) needs %llu bytes, more than the whole %llu-byte file; mq-dist refuses views larger than their file (save t.contiguous() or t.clone() instead of an expanded view)",
			s->path, v->name, v->rname, (unsigned long long)v->numel,
			(unsigned long long)(v->numel * v->es), (unsigned long long)s->file_size);
	if (!v->numel && pt->offset > (uint64_t)v->st->i)
		return mq_fail(s->err, MQ_ERR_INPUT,
			"'%s': tensor '%s': its storage offset lies past the end of record '%s'", s->path, v->name,
			v->rname);
	return 0;
}

/* Room in h->tensors for one more. */
static int grow_tensors(struct parse *s)
{
	struct mq_torch_header *h = s->h;
	if (h->n_tensors + 1 <= s->cap)
		return 0;
	int cap = s->cap ? 2 * s->cap : 64;
	struct mq_torch_tensor *t = realloc(h->tensors, (size_t)cap * sizeof(*t));
	if (!t)
		return mq_fail(s->err, MQ_ERR_INTERNAL, "out of memory");
	h->tensors = t;
	s->cap = cap;
	return 0;
}

/* 1 when a view is row-major with no gaps, as any view of at most one element is. */
static int view_contiguous(const struct mq_pk_tensor *pt, uint64_t numel)
{
	if (numel <= 1)
		return 1;
	uint64_t expect = 1;
	for (int d = pt->ndim - 1; d >= 0; d--) {
		if (pt->shape[d] > 1 && pt->stride[d] != expect)
			return 0;
		expect *= pt->shape[d];
	}
	return 1;
}

/* Appends the checked tensor v to h (room made by grow_tensors); it takes v->rname. */
static int append_tensor(struct parse *s, const struct view *v)
{
	const struct mq_pk_tensor *pt = v->pt;
	struct mq_torch_tensor *t = &s->h->tensors[s->h->n_tensors++];
	memset(t, 0, sizeof(*t));
	t->name = strdup(v->name);
	t->record = v->rname;
	t->dtype = v->st->dtype;
	t->ndim = pt->ndim;
	memcpy(t->shape, pt->shape, sizeof(t->shape));
	memcpy(t->stride, pt->stride, sizeof(t->stride));
	t->offset = v->r->offset + pt->offset * v->es;
	t->nbytes = v->numel * v->es;
	t->contiguous = view_contiguous(pt, v->numel);
	return t->name ? 0 : mq_fail(s->err, MQ_ERR_INTERNAL, "out of memory");
}

/* Adds the tensor `name` of the state dict, checked against its storage record. */
static int add_tensor(struct parse *s, const char *name, const struct mq_pk_tensor *pt)
{
	struct view v = { .name = name, .pt = pt, .st = &s->pk.obj[pt->storage] };
	v.es = mq_dtype_size(v.st->dtype);
	if (!(v.rname = storage_record_name(s, v.st, &v.rlen)))
		return mq_fail(s->err, MQ_ERR_INTERNAL, "out of memory");
	v.r = find_record(s, v.rname, v.rlen);
	v.numel = mq_shape_numel(pt->shape, pt->ndim, &v.overflow);
	int rc = check_storage(s, &v);
	if (!rc)
		rc = check_view(s, &v);
	if (!rc)
		rc = grow_tensors(s);
	if (rc) {
		free(v.rname);
		return rc;
	}
	return append_tensor(s, &v);
}

/* Adds the tensors of a dict (nested dicts join their keys with '.'). */
static int flatten(struct parse *s, int dict, const char *prefix, int depth)
{
	const struct mq_pk_obj *d = &s->pk.obj[dict];
	if (s->seen[dict]) /* shared sub-dicts would multiply the tensors without bound */
		return mq_fail(s->err, MQ_ERR_INPUT, "'%s': the dict at '%s' appears more than once in the state dict",
			       s->path, prefix[0] ? prefix : "(top level)");
	s->seen[dict] = 1;
	if (depth > MAX_NESTING)
		return mq_fail(s->err, MQ_ERR_INPUT, "'%s': the state dict nests deeper than %d levels at '%s'", s->path,
			       MAX_NESTING, prefix);
	for (int i = 0; i + 1 < d->n_items; i += 2) {
		const struct mq_pk_obj *k = &s->pk.obj[d->items[i]], *v = &s->pk.obj[d->items[i + 1]];
		if (k->kind != MQ_PK_STR) {
			note_ignored(s, prefix[0] ? prefix : "(a key that is not a string)");
			continue;
		}
		size_t pl = strlen(prefix), n = pl + (pl ? 1 : 0) + k->len;
		char *name = malloc(n + 1);
		if (!name)
			return mq_fail(s->err, MQ_ERR_INTERNAL, "out of memory");
		snprintf(name, n + 1, "%s%s", prefix, pl ? "." : "");
		memcpy(name + n - k->len, s->pk.data + k->str, k->len);
		name[n] = '\0';
		size_t bad;
		int rc = 0;
		if (strlen(name) != n || mq_utf8_check((const unsigned char *)name, n, &bad))
			rc = mq_fail(s->err, MQ_ERR_INPUT, "'%s': a state dict key near '%s' is not valid UTF-8 text",
				     s->path, prefix[0] ? prefix : "(top level)");
		else if (v->kind == MQ_PK_TENSOR)
			rc = add_tensor(s, name, &s->pk.tensors[v->i]);
		else if (v->kind == MQ_PK_DICT)
			rc = flatten(s, d->items[i + 1], name, depth + 1);
		else
			note_ignored(s, name);
		free(name);
		if (rc)
			return rc;
	}
	return 0;
}

/* One entry of the blob's record table; its offset and size must lie inside the file. */
static int read_record(const struct parse *s, struct mq_reader *b, struct record *r)
{
	if (mq_reader_u64(b, &r->offset) || mq_reader_u64(b, &r->size) || mq_reader_u64(b, &r->method) ||
	    mq_reader_u64(b, &r->name_len) || mq_reader_bytes(b, r->name_len, &r->name) ||
	    r->offset > s->file_size || r->size > s->file_size - r->offset)
		return mq_fail(s->err, MQ_ERR_INTERNAL, "'%s': corrupt torch header broadcast", s->path);
	return 0;
}

/*
 * Deserialises the blob: RAW_MAGIC, the record table into s->rec (in archive
 * order), and the length of data.pkl, whose bytes are all that b is left with.
 */
static int read_blob(struct parse *s, const char *raw, uint64_t raw_len, struct mq_reader *b)
{
	uint64_t n = 0, pkl_len = 0;
	int rc = 0;
	*b = (struct mq_reader){ raw, (size_t)raw_len };
	if (raw_len < 4 || memcmp(raw, RAW_MAGIC, 4) != 0)
		return mq_fail(s->err, MQ_ERR_INTERNAL, "'%s': corrupt torch header broadcast", s->path);
	b->p += 4;
	b->left -= 4;
	if (mq_reader_u64(b, &n) || n == 0 || n > b->left / 32)
		return mq_fail(s->err, MQ_ERR_INTERNAL, "'%s': corrupt torch header broadcast", s->path);
	s->rec = calloc((size_t)n, sizeof(*s->rec));
	if (!s->rec)
		return mq_fail(s->err, MQ_ERR_INTERNAL, "out of memory");
	s->n_rec = n;
	for (uint64_t i = 0; i < n && !rc; i++)
		rc = read_record(s, b, &s->rec[i]);
	if (!rc && (mq_reader_u64(b, &pkl_len) || pkl_len != b->left))
		rc = mq_fail(s->err, MQ_ERR_INTERNAL, "'%s': corrupt torch header broadcast", s->path);
	return rc;
}

/* The folder: the first record's name up to its '/', as torch takes it (h->archive NULL when out of memory). */
static void set_folder(struct parse *s)
{
	const char *slash = memchr(s->rec[0].name, '/', (size_t)s->rec[0].name_len);
	s->dir = s->rec[0].name;
	s->dir_len = slash ? (size_t)(slash - s->dir) + 1 : 0;
	s->h->archive = malloc(s->dir_len + 1);
	s->h->n_records = (int)s->n_rec;
	if (s->h->archive) {
		memcpy(s->h->archive, s->dir, s->dir_len);
		s->h->archive[s->dir_len ? s->dir_len - 1 : 0] = '\0';
	}
}

/* Where the archive's stored MQ_TORCH_META_RECORD lies, if it has one (the last such record in archive order). */
static void find_meta(struct parse *s)
{
	size_t ml = strlen(MQ_TORCH_META_RECORD);
	for (uint64_t i = 0; i < s->n_rec; i++) {
		const struct record *r = &s->rec[i];
		if (r->name_len == s->dir_len + ml && memcmp(r->name + s->dir_len, MQ_TORCH_META_RECORD, ml) == 0 &&
		    r->method == 0) {
			s->h->has_meta = 1;
			s->h->meta_offset = r->offset;
			s->h->meta_size = r->size;
		}
	}
}

/* Runs data.pkl, the bytes b holds, into s->pk. */
static int run_pickle(struct parse *s, const struct mq_reader *b)
{
	char what[600];
	snprintf(what, sizeof(what), "'%s': data.pkl", s->path);
	return s->h->archive ? mq_pickle_load(what, (const unsigned char *)b->p, b->left, &s->pk, s->err)
			     : mq_fail(s->err, MQ_ERR_INTERNAL, "out of memory");
}

/* The dict under the first of state_dict_keys that d holds one under, or -1 (*key names it). */
static int state_dict_under(const struct parse *s, const struct mq_pk_obj *d, const char **key)
{
	for (size_t k = 0; k < sizeof(state_dict_keys) / sizeof(state_dict_keys[0]); k++) {
		int v = dict_get(s, d, state_dict_keys[k]);
		if (v >= 0 && s->pk.obj[v].kind == MQ_PK_DICT) {
			*key = state_dict_keys[k];
			return v;
		}
	}
	return -1;
}

/*
 * The state dict of a checkpoint that keeps it under a well-known key (up to
 * 4 levels down from root, while a dict holds no tensor itself): descends
 * into it, noting the entries beside it and the key it was found under.
 */
static int descend(struct parse *s, int root)
{
	struct mq_torch_header *h = s->h;
	for (int level = 0; level < 4; level++) {
		const struct mq_pk_obj *d = &s->pk.obj[root];
		const char *key = NULL;
		if (d->kind != MQ_PK_DICT || dict_has_tensor(s, d))
			break;
		int next = state_dict_under(s, d, &key);
		if (next < 0)
			break;
		/* the entries beside the state dict (epoch, optimizer, ...) are not model weights */
		for (int i = 0; i + 1 < d->n_items; i += 2) {
			const struct mq_pk_obj *k = &s->pk.obj[d->items[i]];
			if (d->items[i + 1] == next)
				continue;
			if (h->n_ignored++ == 0 && k->kind == MQ_PK_STR && !h->ignored)
				h->ignored = strndup((const char *)s->pk.data + k->str, k->len);
		}
		free(h->state_dict_key);
		h->state_dict_key = strdup(key);
		root = next;
	}
	return root;
}

/*
 * Flattens the state dict at root into h's tensors; refuses one that is no
 * dict, or that holds no tensor but other entries.
 */
static int flatten_state_dict(struct parse *s, int root)
{
	struct mq_torch_header *h = s->h;
	int rc = 0;
	if (s->pk.obj[root].kind != MQ_PK_DICT)
		return mq_fail(s->err, MQ_ERR_INPUT, "'%s': data.pkl holds a %s, not a state dict (a dict of tensors); save model.state_dict() with torch.save",
			       s->path, mq_pickle_kind_name(s->pk.obj[root].kind));
	if (!(s->seen = calloc((size_t)s->pk.n_obj + 1, 1)))
		return mq_fail(s->err, MQ_ERR_INTERNAL, "out of memory");
	rc = flatten(s, root, "", 0);
	free(s->seen);
	s->seen = NULL;
	if (!rc && h->n_tensors == 0 && h->n_ignored)
		rc = mq_fail(s->err, MQ_ERR_INPUT, "'%s': the checkpoint holds no tensors where a state dict is expected (first entry: '%s'); save model.state_dict() with torch.save",
			     s->path, h->ignored ? h->ignored : "?");
	return rc;
}

int mq_torch_parse(const char *path, const char *raw, uint64_t raw_len, uint64_t file_size,
		   struct mq_torch_header *h, struct mq_error *err)
{
	memset(h, 0, sizeof(*h));
	struct parse s = { .path = path, .h = h, .file_size = file_size, .err = err };
	struct mq_reader pkl;
	int rc = read_blob(&s, raw, raw_len, &pkl);
	if (rc) {
		free(s.rec);
		return rc;
	}
	set_folder(&s);
	find_meta(&s);
	qsort(s.rec, (size_t)s.n_rec, sizeof(*s.rec), cmp_record);
	rc = run_pickle(&s, &pkl);
	if (!rc)
		rc = flatten_state_dict(&s, descend(&s, s.pk.root));
	mq_pickle_release(&s.pk);
	free(s.rec);
	if (rc)
		mq_torch_header_release(h);
	return rc;
}

void mq_torch_header_release(struct mq_torch_header *h)
{
	for (int i = 0; i < h->n_tensors; i++) {
		free(h->tensors[i].name);
		free(h->tensors[i].record);
	}
	free(h->tensors);
	free(h->archive);
	free(h->ignored);
	free(h->state_dict_key);
	memset(h, 0, sizeof(*h));
}
