#include "inspect.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manifest.h"
#include "torch.h"

static void print_shape(FILE *out, const uint64_t *shape, int ndim)
{
	char s[256];
	size_t k = 0;
	k += (size_t)snprintf(s + k, sizeof(s) - k, "[");
	for (int d = 0; d < ndim && k < sizeof(s); d++)
		k += (size_t)snprintf(s + k, sizeof(s) - k, d ? ", %llu" : "%llu", (unsigned long long)shape[d]);
	if (k < sizeof(s))
		snprintf(s + k, sizeof(s) - k, "]");
	fprintf(out, "%-20s", s);
}

static void print_meta_value(FILE *out, const char *v)
{
	cJSON *j = (v[0] == '{' || v[0] == '[') ? cJSON_Parse(v) : NULL;
	if (!j) {
		fprintf(out, "%s\n", v);
		return;
	}
	char *pretty = cJSON_Print(j);
	cJSON_Delete(j);
	if (!pretty) {
		fprintf(out, "%s\n", v);
		return;
	}
	/* indent continuation lines under the key */
	fputc('\n', out);
	fputs("    ", out);
	for (const char *p = pretty; *p; p++) {
		fputc(*p, out);
		if (*p == '\n')
			fputs("    ", out);
	}
	fputc('\n', out);
	free(pretty);
}

/* The metadata record of a .pt written by mq-dist: a JSON object of strings, printed like safetensors metadata. */
static int print_torch_metadata(const char *path, const struct mq_torch_header *h, FILE *out, struct mq_error *err)
{
	if (h->meta_size > MQ_ST_MAX_HEADER)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': the metadata record is larger than 100 MB", path);
	char *text = malloc((size_t)h->meta_size + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = text && fd >= 0 ? pread(fd, text, (size_t)h->meta_size, (off_t)h->meta_offset) : -1;
	if (fd >= 0)
		close(fd);
	if (got != (ssize_t)h->meta_size) {
		free(text);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': cannot read its metadata record: %s", path,
			       got < 0 ? strerror(errno) : "short read");
	}
	text[h->meta_size] = '\0';
	cJSON *j = cJSON_ParseWithLength(text, (size_t)h->meta_size);
	free(text);
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': archive/" MQ_TORCH_META_RECORD " is not a JSON object", path);
	}
	fprintf(out, "metadata:\n");
	const cJSON *it;
	cJSON_ArrayForEach(it, j) {
		fprintf(out, "  %s: ", it->string);
		if (cJSON_IsString(it)) {
			print_meta_value(out, it->valuestring);
		} else {
			char *v = cJSON_PrintUnformatted(it);
			fprintf(out, "%s\n", v ? v : "?");
			free(v);
		}
	}
	cJSON_Delete(j);
	return 0;
}

static int print_torch_file(const struct mq_source_file *f, FILE *out, struct mq_error *err)
{
	struct mq_torch_header h;
	int rc = mq_torch_parse(f->path, f->raw, f->raw_len, f->size, &h, err);
	if (rc)
		return rc;
	fprintf(out, "file %s: %llu bytes, torch.save archive '%s/' with %d records, %d tensors", f->path,
		(unsigned long long)f->size, h.archive, h.n_records, h.n_tensors);
	if (h.state_dict_key)
		fprintf(out, " (the state dict under key '%s')", h.state_dict_key);
	fputc('\n', out);
	if (h.n_ignored)
		fprintf(out, "entries that are not tensors of the state dict: %d (first: '%s')\n", h.n_ignored,
			h.ignored ? h.ignored : "?");
	if (h.has_meta)
		rc = print_torch_metadata(f->path, &h, out, err);
	mq_torch_header_release(&h);
	return rc;
}

static int print_file_metadata(const struct mq_source_file *f, FILE *out, struct mq_error *err)
{
	if (f->kind == MQ_SOURCE_TORCH)
		return print_torch_file(f, out, err);
	struct mq_st_header h;
	int rc = mq_st_parse(f->path, f->raw, f->raw_len, f->size, &h, err);
	if (rc)
		return rc;
	fprintf(out, "file %s: %llu bytes, header %llu bytes, %d tensors\n", f->path, (unsigned long long)f->size,
		(unsigned long long)f->raw_len, h.n_tensors);
	if (h.n_meta)
		fprintf(out, "metadata:\n");
	for (int i = 0; i < h.n_meta; i++) {
		fprintf(out, "  %s: ", h.meta[i].key);
		print_meta_value(out, h.meta[i].value);
	}
	mq_st_header_release(&h);
	return 0;
}

int mq_inspect(const char *path, FILE *out, struct mq_error *err)
{
	struct mq_manifest m;
	int rc = mq_manifest_load(path, &m, err);
	if (rc) {
		mq_manifest_release(&m);
		return rc;
	}
	if (m.index_name)
		fprintf(out, "index %s: %d shards\n", path, m.n_files);
	for (int f = 0; f < m.n_files && !rc; f++)
		rc = print_file_metadata(&m.files[f], out, err);
	if (!rc) {
		fprintf(out, "tensors (%d, %llu bytes of data):\n", m.n_tensors,
			(unsigned long long)mq_manifest_data_bytes(&m));
		for (int i = 0; i < m.n_tensors; i++) {
			const struct mq_tensor *t = &m.tensors[i];
			fprintf(out, "  %-6s ", mq_dtype_name(t->dtype));
			print_shape(out, t->shape, t->ndim);
			fprintf(out, " %12llu  %s", (unsigned long long)t->nbytes, t->name);
			if (m.n_files > 1)
				fprintf(out, "  (%s)", m.files[t->file].name);
			if (!t->contiguous)
				fprintf(out, "  (a strided view)");
			fputc('\n', out);
		}
	}
	mq_manifest_release(&m);
	return rc;
}

/* The safetensors __metadata__ of an open file, as cJSON (NULL if it has none). */
static int st_metadata(const char *path, int fd, uint64_t size, cJSON **meta, struct mq_error *err)
{
	char *json = NULL;
	uint64_t n = 0;
	int rc = mq_st_read_raw(path, fd, size, &json, &n, err);
	if (rc)
		return rc;
	cJSON *root = cJSON_ParseWithLength(json, (size_t)n);
	free(json);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': the header is not a JSON object", path);
	}
	*meta = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
	cJSON_Delete(root);
	return 0;
}

int mq_inspect_metadata(const char *path, cJSON **meta, struct mq_error *err)
{
	*meta = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mq_fail(err, MQ_ERR_INPUT, "cannot open '%s': %s", path, strerror(errno));
	unsigned char head[8] = { 0 };
	off_t size = lseek(fd, 0, SEEK_END);
	ssize_t got = pread(fd, head, sizeof(head), 0);
	int rc = 0;
	if (size < 0 || got < 0)
		rc = mq_fail(err, MQ_ERR_INPUT, "cannot read '%s': %s", path, strerror(errno));
	else if (mq_torch_sniff(head, (uint64_t)got) == MQ_TORCH_ZIP) {
		char *raw = NULL;
		uint64_t len = 0;
		struct mq_torch_header h;
		rc = mq_torch_read_raw(path, fd, (uint64_t)size, &raw, &len, err);
		if (!rc)
			rc = mq_torch_parse(path, raw, len, (uint64_t)size, &h, err);
		free(raw);
		if (!rc && h.has_meta && h.meta_size <= MQ_ST_MAX_HEADER) {
			char *text = malloc((size_t)h.meta_size + 1);
			if (text && pread(fd, text, (size_t)h.meta_size, (off_t)h.meta_offset) == (ssize_t)h.meta_size) {
				*meta = cJSON_ParseWithLength(text, (size_t)h.meta_size);
				if (!cJSON_IsObject(*meta)) {
					cJSON_Delete(*meta);
					*meta = NULL;
				}
			}
			free(text);
		}
		if (!rc)
			mq_torch_header_release(&h);
	} else {
		rc = st_metadata(path, fd, (uint64_t)size, meta, err);
	}
	close(fd);
	return rc;
}
