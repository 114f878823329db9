#include "inspect.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"

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

static int print_file_metadata(const struct mq_source_file *f, FILE *out, struct mq_error *err)
{
	struct mq_st_header h;
	int rc = mq_st_parse(f->path, f->json, f->header_len, f->size, &h, err);
	if (rc)
		return rc;
	fprintf(out, "file %s: %llu bytes, header %llu bytes, %d tensors\n", f->path, (unsigned long long)f->size,
		(unsigned long long)f->header_len, h.n_tensors);
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
			fputc('\n', out);
		}
	}
	mq_manifest_release(&m);
	return rc;
}
