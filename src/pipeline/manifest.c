#include "manifest.h"

#include "buf.h"
#include "torch.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_READ 65536u /* bytes of the shard index read at a time */

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	size_t n = (size_t)(slash - path);
	if (n == 0)
		n = 1;
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, path, n);
		d[n] = '\0';
	}
	return d;
}

static const char *base_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* Opens one model file, tells its format from its first bytes, and reads its raw header into f. */
static int read_source(struct mq_source_file *f, struct mq_error *err)
{
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mq_fail(err, MQ_ERR_INPUT, "cannot open '%s': %s", f->path, strerror(errno));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0)
		rc = mq_fail(err, MQ_ERR_INPUT, "cannot stat '%s': %s", f->path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = mq_fail(err, MQ_ERR_INPUT, "'%s' is not a regular file", f->path);
	unsigned char head[8] = { 0 };
	ssize_t got = 0;
	if (!rc) {
		f->size = (uint64_t)st.st_size;
		got = pread(fd, head, sizeof(head), 0);
	}
	enum mq_torch_sniff kind = mq_torch_sniff(head, got > 0 ? (uint64_t)got : 0);
	if (!rc && kind == MQ_TORCH_LEGACY)
		rc = mq_fail(err, MQ_ERR_INPUT,
			"'%s': a legacy torch.save file (before torch 1.6, or _use_new_zipfile_serialization=False); load it in torch and save it again with torch.save, which writes the zip format",
			f->path);
	else if (!rc && kind == MQ_TORCH_ZIP) {
		f->kind = MQ_SOURCE_TORCH;
		rc = mq_torch_read_raw(f->path, fd, f->size, &f->raw, &f->raw_len, err);
	} else if (!rc) {
		f->kind = MQ_SOURCE_SAFETENSORS;
		rc = mq_st_read_raw(f->path, fd, f->size, &f->raw, &f->raw_len, err);
	}
	close(fd);
	return rc;
}

static int add_file(struct mq_manifest *m, const char *dir, const char *name, struct mq_error *err)
{
	struct mq_source_file *files = realloc(m->files, (size_t)(m->n_files + 1) * sizeof(*files));
	if (!files)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	m->files = files;
	struct mq_source_file *f = &files[m->n_files++];
	memset(f, 0, sizeof(*f));
	size_t n = strlen(dir) + strlen(name) + 2;
	f->path = malloc(n);
	f->name = strdup(name);
	if (!f->path || !f->name)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	snprintf(f->path, n, "%s/%s", dir, name);
	return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
	return strcmp(((const struct mq_tensor *)a)->name, ((const struct mq_tensor *)b)->name);
}

static void row_major_strides(struct mq_tensor *t)
{
	uint64_t s = 1;
	for (int d = t->ndim - 1; d >= 0; d--) {
		t->stride[d] = s;
		s *= t->shape[d];
	}
	t->contiguous = 1;
}

/* Whether n more tensors from file fi take the model past MQ_MAX_TENSORS (then an error). */
static int too_many_tensors(const struct mq_manifest *m, int fi, int n, struct mq_error *err)
{
	if (n <= MQ_MAX_TENSORS - m->n_tensors)
		return 0;
	return mq_fail(err, MQ_ERR_INPUT,
		"'%s': with this file the model holds more than %d tensors, the limit of mq-dist (MQ_MAX_TENSORS in src/core/bounds.h); a model beyond that limit needs a rebuild with a larger one",
		m->files[fi].path, MQ_MAX_TENSORS);
}

/* Room for n more tensors in the table. */
static int reserve_tensors(struct mq_manifest *m, int n, struct mq_error *err)
{
	struct mq_tensor *t = realloc(m->tensors, (size_t)(m->n_tensors + n + 1) * sizeof(*t));
	if (!t)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	m->tensors = t;
	return 0;
}

/* Appends a tensor (room reserved), taking its name; stride NULL means row-major. */
static void append_tensor(struct mq_manifest *m, int file, char **name, enum mq_dtype dtype, int ndim,
			  const uint64_t *shape, const uint64_t *stride, uint64_t offset, uint64_t nbytes)
{
	struct mq_tensor *d = &m->tensors[m->n_tensors++];
	memset(d, 0, sizeof(*d));
	d->name = *name;
	*name = NULL; /* moved */
	d->dtype = dtype;
	d->ndim = ndim;
	memcpy(d->shape, shape, sizeof(d->shape));
	d->file = file;
	d->offset = offset;
	d->nbytes = nbytes;
	if (stride)
		memcpy(d->stride, stride, sizeof(d->stride));
	else
		row_major_strides(d);
}

/* The tensors of a torch checkpoint, appended to the table. */
static int add_torch_file(struct mq_manifest *m, int fi, struct mq_error *err)
{
	struct mq_source_file *f = &m->files[fi];
	struct mq_torch_header h;
	int rc = mq_torch_parse(f->path, f->raw, f->raw_len, f->size, &h, err);
	if (rc)
		return rc;
	if (too_many_tensors(m, fi, h.n_tensors, err) || reserve_tensors(m, h.n_tensors, err)) {
		mq_torch_header_release(&h);
		return err->code;
	}
	for (int i = 0; i < h.n_tensors; i++) {
		struct mq_torch_tensor *s = &h.tensors[i];
		append_tensor(m, fi, &s->name, s->dtype, s->ndim, s->shape, s->contiguous ? NULL : s->stride, s->offset,
			      s->nbytes);
	}
	if (h.state_dict_key)
		mq_info("%s: using the state dict under key '%s'; %d other entr%s ignored\n", f->name, h.state_dict_key,
			h.n_ignored, h.n_ignored == 1 ? "y" : "ies");
	else if (h.n_ignored)
		mq_info("%s: %d entr%s of the state dict that %s not tensors ignored (first: '%s')\n", f->name, h.n_ignored,
			h.n_ignored == 1 ? "y" : "ies", h.n_ignored == 1 ? "is" : "are", h.ignored ? h.ignored : "?");
	mq_torch_header_release(&h);
	return 0;
}

/* Parses every file's header into the tensor table (pure; any rank). */
static int build_table(struct mq_manifest *m, struct mq_error *err)
{
	for (int fi = 0; fi < m->n_files; fi++) {
		struct mq_source_file *f = &m->files[fi];
		if (f->kind == MQ_SOURCE_TORCH) {
			int rc = add_torch_file(m, fi, err);
			if (rc)
				return rc;
			continue;
		}
		struct mq_st_header h;
		int rc = mq_st_parse(f->path, f->raw, f->raw_len, f->size, &h, err);
		if (rc)
			return rc;
		if (too_many_tensors(m, fi, h.n_tensors, err) || reserve_tensors(m, h.n_tensors, err)) {
			mq_st_header_release(&h);
			return err->code;
		}
		for (int i = 0; i < h.n_tensors; i++) {
			struct mq_st_tensor *s = &h.tensors[i];
			append_tensor(m, fi, &s->name, s->dtype, s->ndim, s->shape, NULL, h.data_start + s->begin,
				      s->end - s->begin);
		}
		mq_st_header_release(&h);
	}
	if (m->n_tensors > 1)
		qsort(m->tensors, (size_t)m->n_tensors, sizeof(*m->tensors), cmp_tensor_name);
	for (int i = 1; i < m->n_tensors; i++) {
		if (strcmp(m->tensors[i - 1].name, m->tensors[i].name) == 0 && m->tensors[i - 1].file == m->tensors[i].file)
			return mq_fail(err, MQ_ERR_INPUT, "'%s': two entries of the state dict are both named '%s'",
				       m->files[m->tensors[i].file].path, m->tensors[i].name);
		if (strcmp(m->tensors[i - 1].name, m->tensors[i].name) == 0)
			return mq_fail(err, MQ_ERR_INPUT, "tensor '%s' is stored in both '%s' and '%s'",
				       m->tensors[i].name, m->files[m->tensors[i - 1].file].path,
				       m->files[m->tensors[i].file].path);
	}
	return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the index, checks shard names, and registers the shards in name order. */
/* The whole index file, NUL-terminated (*len bytes before the NUL), within MQ_INDEX_MAX_BYTES. */
static int read_index_text(const char *path, char **out, size_t *len_out, struct mq_error *err)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return mq_fail(err, MQ_ERR_INPUT, "cannot open '%s': %s", path, strerror(errno));
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;
	while (len <= MQ_INDEX_MAX_BYTES) {
		if (len + INDEX_READ + 1 > cap) {
			cap = cap ? cap * 2 : 2 * INDEX_READ;
			cap = cap > MQ_INDEX_MAX_BYTES + INDEX_READ + 1 ? MQ_INDEX_MAX_BYTES + INDEX_READ + 1 : cap;
			char *t = realloc(text, cap);
			if (!t) {
				rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
				break;
			}
			text = t;
		}
		size_t r = fread(text + len, 1, INDEX_READ, fp);
		len += r;
		if (r < INDEX_READ)
			break;
	}
	if (!rc && ferror(fp))
		rc = mq_fail(err, MQ_ERR_INPUT, "cannot read '%s': %s", path, strerror(errno));
	if (!rc && len > MQ_INDEX_MAX_BYTES)
		rc = mq_fail(err, MQ_ERR_INPUT,
			"'%s': the shard index is larger than %llu MiB, the limit of mq-dist (MQ_INDEX_MAX_BYTES in src/core/bounds.h); it is not a Hugging Face shard index, or one for more tensors than mq-dist reads",
			path, (unsigned long long)(MQ_INDEX_MAX_BYTES >> 20));
	fclose(fp);
	if (rc) {
		free(text);
		return rc;
	}
	text[len] = '\0';
	*out = text;
	*len_out = len;
	return 0;
}

/* The index's "weight_map" object, detached from the rest (within MQ_MAX_TENSORS entries). */
static int parse_weight_map(const char *path, const char *text, size_t len, cJSON **map_out, struct mq_error *err)
{
	cJSON *root = cJSON_ParseWithLength(text, len);
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': not a valid JSON object (expected a Hugging Face shard index)", path);
	}
	cJSON *map = cJSON_DetachItemFromObjectCaseSensitive(root, "weight_map");
	cJSON_Delete(root);
	if (!cJSON_IsObject(map)) {
		cJSON_Delete(map);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': no \"weight_map\" object (expected a Hugging Face shard index)", path);
	}
	int n = cJSON_GetArraySize(map);
	if (n > MQ_MAX_TENSORS) {
		cJSON_Delete(map);
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': weight_map lists %d tensors, more than the limit of mq-dist (%d, MQ_MAX_TENSORS in src/core/bounds.h); a model beyond that limit needs a rebuild with a larger one",
			path, n, MQ_MAX_TENSORS);
	}
	*map_out = map;
	return 0;
}

/* The shards the weight map names (each a file beside the index), once each, in name order. */
static int add_shards(const char *path, const cJSON *map, struct mq_manifest *m, struct mq_error *err)
{
	char **names = calloc((size_t)cJSON_GetArraySize(map) + 1, sizeof(*names));
	if (!names)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	int k = 0, rc = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, map) {
		const char *v = cJSON_GetStringValue(it);
		if (!v) {
			rc = mq_fail(err, MQ_ERR_INPUT, "'%s': weight_map entry '%s' is not a file name", path, it->string);
			break;
		}
		if (strchr(v, '/') || strchr(v, '\\') || strcmp(v, ".") == 0 || strcmp(v, "..") == 0 || !*v) {
			rc = mq_fail(err, MQ_ERR_INPUT,
				"'%s': shard '%s' (for tensor '%s') is not a file in the index's folder; shards must sit beside the index",
				path, v, it->string);
			break;
		}
		names[k++] = (char *)v;
	}
	char *dir = rc ? NULL : dir_of(path);
	if (!rc && !dir)
		rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	if (!rc)
		qsort(names, (size_t)k, sizeof(*names), cmp_str_ptr);
	for (int i = 0; i < k && !rc; i++)
		if (i == 0 || strcmp(names[i], names[i - 1]) != 0)
			rc = add_file(m, dir, names[i], err);
	if (!rc && m->n_files == 0)
		rc = mq_fail(err, MQ_ERR_INPUT, "'%s': weight_map is empty", path);
	free(dir);
	free(names);
	return rc;
}

static int load_index(const char *path, struct mq_manifest *m, cJSON **map_out, struct mq_error *err)
{
	char *text = NULL;
	size_t len = 0;
	cJSON *map = NULL;
	int rc = read_index_text(path, &text, &len, err);
	if (rc)
		return rc;
	m->index_size = len;
	rc = parse_weight_map(path, text, len, &map, err);
	free(text);
	if (!rc)
		rc = add_shards(path, map, m, err);
	if (rc)
		cJSON_Delete(map);
	else
		*map_out = map;
	return rc;
}

/* Every weight_map entry must name a tensor of that shard, and every tensor must be mapped. */
static int check_index(const char *path, const struct mq_manifest *m, cJSON *map, struct mq_error *err)
{
	cJSON *it;
	int n_mapped = 0;
	cJSON_ArrayForEach(it, map) {
		n_mapped++;
		int t = mq_manifest_find(m, it->string);
		const char *shard = cJSON_GetStringValue(it);
		if (t < 0)
			return mq_fail(err, MQ_ERR_INPUT, "'%s': tensor '%s' is mapped to '%s' but that shard does not hold it",
				       path, it->string, shard);
		if (strcmp(m->files[m->tensors[t].file].name, shard) != 0)
			return mq_fail(err, MQ_ERR_INPUT, "'%s': tensor '%s' is mapped to '%s' but is stored in '%s'",
				       path, it->string, shard, m->files[m->tensors[t].file].name);
	}
	if (n_mapped != m->n_tensors) {
		for (int i = 0; i < m->n_tensors; i++)
			if (!cJSON_GetObjectItemCaseSensitive(map, m->tensors[i].name))
				return mq_fail(err, MQ_ERR_INPUT, "'%s': shard '%s' holds tensor '%s', which weight_map does not list",
					       path, m->files[m->tensors[i].file].name, m->tensors[i].name);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': weight_map has duplicate tensor names", path);
	}
	return 0;
}

int mq_manifest_load(const char *path, struct mq_manifest *m, struct mq_error *err)
{
	memset(m, 0, sizeof(*m));
	int rc = 0;
	cJSON *map = NULL;
	m->model_path = strdup(path);
	if (!m->model_path)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	if (ends_with(path, ".json")) {
		m->index_name = strdup(base_of(path));
		if (!m->index_name)
			return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
		rc = load_index(path, m, &map, err);
	} else {
		char *dir = dir_of(path);
		rc = dir ? add_file(m, dir, base_of(path), err) : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
		free(dir);
		if (!rc) { /* keep the user's spelling of the path in messages */
			free(m->files[0].path);
			m->files[0].path = strdup(path);
			if (!m->files[0].path)
				rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
		}
	}
	uint64_t header_bytes = 0;
	for (int i = 0; i < m->n_files && !rc; i++) {
		rc = read_source(&m->files[i], err);
		header_bytes += m->files[i].raw_len;
		if (!rc && header_bytes > MQ_MAX_HEADER_BYTES)
			rc = mq_fail(err, MQ_ERR_INPUT,
				"'%s': the headers of the model's files reach more than %llu MiB with '%s', the limit of mq-dist (MQ_MAX_HEADER_BYTES in src/core/bounds.h); the shards are corrupt, or the model needs a rebuild with a larger limit",
				path, (unsigned long long)(MQ_MAX_HEADER_BYTES >> 20), m->files[i].name);
	}
	if (!rc)
		rc = build_table(m, err);
	if (!rc && map)
		rc = check_index(path, m, map, err);
	cJSON_Delete(map);
	return rc;
}

void mq_manifest_release(struct mq_manifest *m)
{
	for (int i = 0; i < m->n_files; i++) {
		free(m->files[i].path);
		free(m->files[i].name);
		free(m->files[i].raw);
	}
	free(m->files);
	for (int i = 0; i < m->n_tensors; i++)
		free(m->tensors[i].name);
	free(m->tensors);
	free(m->model_path);
	free(m->index_name);
	memset(m, 0, sizeof(*m));
}

int mq_manifest_find(const struct mq_manifest *m, const char *name)
{
	int lo = 0, hi = m->n_tensors - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int c = strcmp(m->tensors[mid].name, name);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

uint64_t mq_manifest_data_bytes(const struct mq_manifest *m)
{
	uint64_t s = 0;
	for (int i = 0; i < m->n_tensors; i++)
		s += m->tensors[i].nbytes;
	return s;
}

/* ---- pack / unpack: u64 counts and lengths, then the bytes ---- */

static void put_str(struct mq_buf *b, const char *s, uint64_t n)
{
	mq_buf_add_u64(b, n);
	mq_buf_add(b, s, (size_t)n);
}

int mq_manifest_pack(const struct mq_manifest *m, char **blob, size_t *len, struct mq_error *err)
{
	struct mq_buf b = MQ_BUF_INIT;
	put_str(&b, m->model_path, strlen(m->model_path));
	put_str(&b, m->index_name ? m->index_name : "", m->index_name ? strlen(m->index_name) : 0);
	mq_buf_add_u64(&b, m->index_size);
	mq_buf_add_u64(&b, (uint64_t)m->n_files);
	for (int i = 0; i < m->n_files; i++) {
		const struct mq_source_file *f = &m->files[i];
		put_str(&b, f->path, strlen(f->path));
		put_str(&b, f->name, strlen(f->name));
		mq_buf_add_u64(&b, (uint64_t)f->kind);
		mq_buf_add_u64(&b, f->size);
		put_str(&b, f->raw, f->raw_len);
	}
	if (!mq_buf_ok(&b)) {
		mq_buf_release(&b);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory packing the manifest");
	}
	*blob = mq_buf_detach(&b, len);
	return 0;
}

static int get_str(struct mq_reader *r, char **s, uint64_t *n_out)
{
	uint64_t n;
	const char *p;
	if (mq_reader_u64(r, &n) || mq_reader_bytes(r, n, &p))
		return -1;
	*s = malloc((size_t)n + 1);
	if (!*s)
		return -1;
	memcpy(*s, p, (size_t)n);
	(*s)[n] = '\0';
	if (n_out)
		*n_out = n;
	return 0;
}

int mq_manifest_unpack(const char *blob, size_t len, struct mq_manifest *m, struct mq_error *err)
{
	memset(m, 0, sizeof(*m));
	struct mq_reader r = { blob, len };
	uint64_t n_files, n;
	if (get_str(&r, &m->model_path, NULL) || get_str(&r, &m->index_name, &n) || mq_reader_u64(&r, &m->index_size) ||
	    mq_reader_u64(&r, &n_files) ||
	    n_files > len)
		goto bad;
	if (n == 0) {
		free(m->index_name);
		m->index_name = NULL;
	}
	m->files = calloc((size_t)n_files + 1, sizeof(*m->files));
	if (!m->files)
		goto bad;
	for (uint64_t i = 0; i < n_files; i++) {
		struct mq_source_file *f = &m->files[i];
		uint64_t kind;
		m->n_files++;
		if (get_str(&r, &f->path, NULL) || get_str(&r, &f->name, NULL) || mq_reader_u64(&r, &kind) ||
		    mq_reader_u64(&r, &f->size) || get_str(&r, &f->raw, &f->raw_len) || kind > MQ_SOURCE_TORCH)
			goto bad;
		f->kind = (enum mq_source_kind)kind;
	}
	return build_table(m, err);
bad:
	return mq_fail(err, MQ_ERR_INTERNAL, "corrupt manifest broadcast");
}
