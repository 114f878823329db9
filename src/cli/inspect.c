#include "inspect.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "fileio.h"
#include "hf.h"
#include "inspect_folder.h"
#include "manifest.h"
#include "options.h"
#include "plot.h"
#include "scheme.h"
#include "status.h"
#include "torch.h"

/* One source file as inspect shows it: its header figures and its metadata. */
struct file_info {
	uint64_t header_bytes;      /* safetensors: the JSON header's length */
	char *archive;              /* torch: the records' folder, or NULL */
	int n_records, n_tensors, n_ignored;
	char *ignored;              /* torch: the first entry that is not a tensor of the state dict */
	char *state_dict_key;       /* torch: where the state dict was found, or NULL */
	cJSON *meta;                /* object of metadata values, in file order; never NULL once loaded */
};

/* The figures of the whole model, and of its mq-dist metadata if it has some. */
struct summary {
	uint64_t data_bytes;
	int n_of[MQ_DTYPE_COUNT];
	uint64_t bytes_of[MQ_DTYPE_COUNT];
	const cJSON *mq;            /* the metadata of an mq-dist output (one file with mq_dist_version), or NULL */
	int n_quantized, n_kept;    /* from its per-layer records; -1 when they cannot be read */
};

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

/* A metadata value that holds a JSON object or array, parsed; NULL for any other value. */
static cJSON *parse_json_value(const char *v)
{
	return (v[0] == '{' || v[0] == '[') ? cJSON_Parse(v) : NULL;
}

static void print_meta_value(FILE *out, const char *v, int verbose)
{
	cJSON *j = parse_json_value(v);
	char *pretty = j && verbose ? cJSON_Print(j) : NULL;
	if (j && !verbose) {
		int n = cJSON_GetArraySize(j);
		fprintf(out, "(a JSON %s of %d %s; --verbose shows it)\n", cJSON_IsObject(j) ? "object" : "array", n,
			cJSON_IsObject(j) ? (n == 1 ? "entry" : "entries") : (n == 1 ? "item" : "items"));
	} else if (!pretty) {
		fprintf(out, "%s\n", v);
	} else { /* indent continuation lines under the key */
		fputs("\n    ", out);
		for (const char *p = pretty; *p; p++) {
			fputc(*p, out);
			if (*p == '\n')
				fputs("    ", out);
		}
		fputc('\n', out);
	}
	free(pretty);
	cJSON_Delete(j);
}

/* The metadata record of a .pt written by mq-dist: a JSON object. */
static int torch_metadata(const char *path, const struct mq_torch_header *h, cJSON **meta, struct mq_error *err)
{
	if (h->meta_size > MQ_ST_MAX_HEADER)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': the metadata record is larger than 100 MB", path);
	char *text = malloc((size_t)h->meta_size + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int bad = !text || fd < 0 || mq_pread_full(fd, text, (size_t)h->meta_size, h->meta_offset, NULL);
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (bad) {
		free(text);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': cannot read its metadata record: %s", path,
			       e ? strerror(e) : "short read");
	}
	text[h->meta_size] = '\0';
	cJSON *j = cJSON_ParseWithLength(text, (size_t)h->meta_size);
	free(text);
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': archive/" MQ_TORCH_META_RECORD " is not a JSON object", path);
	}
	cJSON_Delete(*meta);
	*meta = j;
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int load_file_info(const struct mq_source_file *f, struct file_info *fi, struct mq_error *err)
{
	memset(fi, 0, sizeof(*fi));
	if (!(fi->meta = cJSON_CreateObject()))
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	int rc;
	if (f->kind == MQ_SOURCE_TORCH) {
		struct mq_torch_header h;
		if ((rc = mq_torch_parse(f->path, f->raw, f->raw_len, f->size, &h, err)))
			return rc;
		fi->n_records = h.n_records;
		fi->n_tensors = h.n_tensors;
		fi->n_ignored = h.n_ignored;
		fi->archive = dup_or_null(h.archive);
		fi->ignored = dup_or_null(h.ignored);
		fi->state_dict_key = dup_or_null(h.state_dict_key);
		rc = h.has_meta ? torch_metadata(f->path, &h, &fi->meta, err) : 0;
		mq_torch_header_release(&h);
		return rc;
	}
	struct mq_st_header h;
	if ((rc = mq_st_parse(f->path, f->raw, f->raw_len, f->size, &h, err)))
		return rc;
	fi->header_bytes = f->raw_len;
	fi->n_tensors = h.n_tensors;
	for (int i = 0; i < h.n_meta && !rc; i++)
		if (!cJSON_AddStringToObject(fi->meta, h.meta[i].key, h.meta[i].value))
			rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	mq_st_header_release(&h);
	return rc;
}

static void file_info_release(struct file_info *fi)
{
	free(fi->archive);
	free(fi->ignored);
	free(fi->state_dict_key);
	cJSON_Delete(fi->meta);
}

static const char *meta_str(const cJSON *meta, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void summarize(const struct mq_manifest *m, const struct file_info *fi, struct summary *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < m->n_tensors; i++) {
		const struct mq_tensor *t = &m->tensors[i];
		s->data_bytes += t->nbytes;
		s->n_of[t->dtype]++;
		s->bytes_of[t->dtype] += t->nbytes;
	}
	if (m->n_files != 1 || !meta_str(fi[0].meta, "mq_dist_version"))
		return;
	s->mq = fi[0].meta;
	const char *layers = meta_str(s->mq, "layers");
	cJSON *j = layers ? cJSON_Parse(layers) : NULL;
	s->n_quantized = s->n_kept = cJSON_IsObject(j) ? 0 : -1;
	const cJSON *records = cJSON_IsObject(j) ? j : NULL, *it;
	cJSON_ArrayForEach(it, records) {
		const char *action = meta_str(it, "action");
		s->n_quantized += action && strcmp(action, "quantized") == 0;
		s->n_kept += action && strcmp(action, "kept") == 0;
	}
	cJSON_Delete(j);
}

/* A metadata figure as a number: 0 and *v, or -1 when absent or not a finite number. */
static int meta_num(const cJSON *meta, const char *key, double *v)
{
	const char *s = meta_str(meta, key);
	char *end;
	if (!s || !*s)
		return -1;
	*v = strtod(s, &end);
	return *end || !isfinite(*v) ? -1 : 0;
}

/* The dtypes present, most bytes first (then in dtype order). */
static int dtype_order(const struct summary *s, enum mq_dtype *order)
{
	int n = 0;
	for (int d = 0; d < MQ_DTYPE_COUNT; d++) {
		if (!s->n_of[d])
			continue;
		int k = n++;
		for (; k > 0 && s->bytes_of[order[k - 1]] < s->bytes_of[d]; k--)
			order[k] = order[k - 1];
		order[k] = (enum mq_dtype)d;
	}
	return n;
}

/* A mixed-precision file's schemes: "mixed (int4-g128 for 11 layers, int8 for 17)", from its summary. */
static void mixed_text(const char *summary, char *s, size_t cap)
{
	cJSON *j = summary ? cJSON_Parse(summary) : NULL;
	const cJSON *chosen = cJSON_GetObjectItemCaseSensitive(j, "chosen"), *c;
	int k = snprintf(s, cap, "mixed (");
	size_t start = (size_t)k;
	cJSON_ArrayForEach(c, chosen) {
		if (!cJSON_IsNumber(c) || c->valueint <= 0 || (size_t)k >= cap)
			continue;
		k += snprintf(s + k, cap - (size_t)k, "%s%s for %d%s", (size_t)k > start ? ", " : "", c->string, c->valueint,
			      (size_t)k > start ? "" : " layers");
	}
	if ((size_t)k == start)
		snprintf(s, cap, "mixed");
	else if ((size_t)k < cap)
		snprintf(s + k, cap - (size_t)k, ")");
	cJSON_Delete(j);
}

/* "int8 (symmetric, per channel)", "fp16 (a cast)", or the scheme as recorded. */
static void scheme_text(const cJSON *mq, char *s, size_t cap)
{
	const char *name = meta_str(mq, "scheme"), *sym = meta_str(mq, "symmetric"), *pc = meta_str(mq, "per_channel");
	enum mq_scheme sc;
	if (!name)
		snprintf(s, cap, "not recorded");
	else if (strcmp(name, "mixed") == 0)
		mixed_text(meta_str(mq, "mixed_precision"), s, cap);
	else if (mq_scheme_parse(name, &sc) == 0 && !mq_scheme_get(sc)->granularities)
		snprintf(s, cap, "%s (a cast)", name);
	else
		snprintf(s, cap, "%s (%s, %s)", name, sym && strcmp(sym, "true") == 0 ? "symmetric" : "asymmetric",
			 pc && strcmp(pc, "true") == 0 ? "per channel" : "per tensor");
}

static void print_db(FILE *out, const cJSON *mq, const char *key)
{
	double v;
	if (meta_num(mq, key, &v) == 0)
		fprintf(out, "%.2f dB", v);
	else
		fprintf(out, "%s", meta_str(mq, key) ? meta_str(mq, key) : "none");
}

static void print_summary(const struct summary *s, int n_tensors, FILE *out)
{
	enum mq_dtype order[MQ_DTYPE_COUNT];
	int n = dtype_order(s, order);
	fprintf(out, "summary:\n  tensors      %d, %llu bytes of data (%.3f MiB)\n  dtypes      ", n_tensors,
		(unsigned long long)s->data_bytes, (double)s->data_bytes / 1048576.0);
	for (int k = 0; k < n; k++)
		fprintf(out, "%s %s %d (%llu bytes)", k ? "," : "", mq_dtype_name(order[k]), s->n_of[order[k]],
			(unsigned long long)s->bytes_of[order[k]]);
	fputc('\n', out);
	if (!s->mq) {
		fprintf(out, "  written by   not mq-dist (no mq-dist metadata)\n");
		return;
	}
	char scheme[128];
	scheme_text(s->mq, scheme, sizeof(scheme));
	fprintf(out, "  written by   mq-dist %s\n  scheme       %s\n", meta_str(s->mq, "mq_dist_version"), scheme);
	if (s->n_quantized >= 0)
		fprintf(out, "  layers       %d quantized, %d kept\n", s->n_quantized, s->n_kept);
	double in, q, ratio;
	if (meta_num(s->mq, "original_size_bytes", &in) == 0 && meta_num(s->mq, "quantized_size_bytes", &q) == 0)
		fprintf(out, "  size         %.0f -> %.0f bytes (%.3f -> %.3f MiB)", in, q, in / 1048576.0, q / 1048576.0);
	if (meta_num(s->mq, "compression_ratio", &ratio) == 0)
		fprintf(out, ", compression %.4f", ratio);
	fprintf(out, "\n  SQNR         ");
	print_db(out, s->mq, "sqnr_db");
	fprintf(out, " (aggregate over the quantized tensors)\n");
	const char *calib = meta_str(s->mq, "calibration_file");
	if (calib) {
		fprintf(out, "  calibration  %s, observer %s, activations %s; output SQNR ", calib,
			meta_str(s->mq, "observer") ? meta_str(s->mq, "observer") : "?",
			meta_str(s->mq, "activation_dtype") ? meta_str(s->mq, "activation_dtype") : "?");
		print_db(out, s->mq, "output_sqnr_db_w");
		fprintf(out, " (weights), ");
		print_db(out, s->mq, "output_sqnr_db_wa");
		fprintf(out, " (weights and activations); weights only: %s\n",
			meta_str(s->mq, "weights_only_layers") ? meta_str(s->mq, "weights_only_layers") : "0");
	}
}

static void print_file_line(const struct mq_source_file *f, const struct file_info *fi, FILE *out)
{
	if (f->kind == MQ_SOURCE_TORCH) {
		fprintf(out, "file %s: %llu bytes, torch.save archive '%s/' with %d records, %d tensors", f->path,
			(unsigned long long)f->size, fi->archive ? fi->archive : "?", fi->n_records, fi->n_tensors);
		if (fi->state_dict_key)
			fprintf(out, " (the state dict under key '%s')", fi->state_dict_key);
		fputc('\n', out);
		if (fi->n_ignored)
			fprintf(out, "entries that are not tensors of the state dict: %d (first: '%s')\n", fi->n_ignored,
				fi->ignored ? fi->ignored : "?");
	} else {
		fprintf(out, "file %s: %llu bytes, header %llu bytes, %d tensors\n", f->path, (unsigned long long)f->size,
			(unsigned long long)fi->header_bytes, fi->n_tensors);
	}
}

/* Text: the files, the summary, the tensor table, then the metadata (JSON values in full with verbose). */
static void print_text(const char *path, const struct mq_manifest *m, const struct file_info *fi, int verbose,
		       FILE *out)
{
	struct summary s;
	summarize(m, fi, &s);
	if (m->index_name)
		fprintf(out, "index %s: %d shards\n", path, m->n_files);
	for (int f = 0; f < m->n_files; f++)
		print_file_line(&m->files[f], &fi[f], out);
	print_summary(&s, m->n_tensors, out);
	fprintf(out, "tensors (%d, %llu bytes of data):\n", m->n_tensors, (unsigned long long)s.data_bytes);
	for (int i = 0; i < m->n_tensors; i++) {
		const struct mq_tensor *t = &m->tensors[i];
		fprintf(out, "  %-6s ", mq_dtype_name(t->dtype));
		print_shape(out, t->shape, t->ndim);
		/* escaped here: a newline in a name would split the line before the listing's filter sees it */
		mq_print(out, " %12llu  %s", (unsigned long long)t->nbytes, t->name);
		if (m->n_files > 1)
			mq_print(out, "  (%s)", m->files[t->file].name);
		if (!t->contiguous)
			fprintf(out, "  (a strided view)");
		fputc('\n', out);
	}
	for (int f = 0; f < m->n_files; f++) {
		if (!cJSON_GetArraySize(fi[f].meta))
			continue;
		if (m->n_files > 1)
			fprintf(out, "metadata of %s:\n", m->files[f].name);
		else
			fprintf(out, "metadata:\n");
		const cJSON *it;
		cJSON_ArrayForEach(it, fi[f].meta) {
			fprintf(out, "  %s: ", it->string);
			if (cJSON_IsString(it)) {
				print_meta_value(out, it->valuestring, verbose);
			} else {
				char *v = cJSON_PrintUnformatted(it);
				fprintf(out, "%s\n", v ? v : "?");
				free(v);
			}
		}
	}
}

/* ---- --json: one document with stable keys (README, "inspect") ---- */

/* Adds key: the metadata figure as a number, or null. */
static int add_meta_num(cJSON *obj, const char *key, const cJSON *mq, const char *mkey)
{
	double v;
	return meta_num(mq, mkey, &v) == 0 ? cJSON_AddNumberToObject(obj, key, v) != NULL
					   : cJSON_AddNullToObject(obj, key) != NULL;
}

static int add_str_or_null(cJSON *obj, const char *key, const char *v)
{
	return (v ? cJSON_AddStringToObject(obj, key, v) : cJSON_AddNullToObject(obj, key)) != NULL;
}

static cJSON *json_mq(const struct summary *s)
{
	cJSON *q = cJSON_CreateObject();
	const char *sym = meta_str(s->mq, "symmetric"), *pc = meta_str(s->mq, "per_channel");
	int ok = q && add_str_or_null(q, "version", meta_str(s->mq, "mq_dist_version")) &&
		 add_str_or_null(q, "scheme", meta_str(s->mq, "scheme")) &&
		 cJSON_AddBoolToObject(q, "symmetric", sym && strcmp(sym, "true") == 0) &&
		 cJSON_AddBoolToObject(q, "per_channel", pc && strcmp(pc, "true") == 0);
	ok = ok && (s->n_quantized >= 0 ? cJSON_AddNumberToObject(q, "quantized_layers", s->n_quantized) &&
						  cJSON_AddNumberToObject(q, "kept_layers", s->n_kept)
					: cJSON_AddNullToObject(q, "quantized_layers") && cJSON_AddNullToObject(q, "kept_layers"));
	ok = ok && add_meta_num(q, "original_bytes", s->mq, "original_size_bytes") &&
	     add_meta_num(q, "quantized_bytes", s->mq, "quantized_size_bytes") &&
	     add_meta_num(q, "compression_ratio", s->mq, "compression_ratio") &&
	     add_meta_num(q, "sqnr_db", s->mq, "sqnr_db");
	if (ok && !meta_str(s->mq, "calibration_file")) {
		ok = cJSON_AddNullToObject(q, "calibration") != NULL;
	} else if (ok) {
		cJSON *c = cJSON_AddObjectToObject(q, "calibration");
		ok = c && add_str_or_null(c, "file", meta_str(s->mq, "calibration_file")) &&
		     add_str_or_null(c, "observer", meta_str(s->mq, "observer")) &&
		     add_str_or_null(c, "activation_dtype", meta_str(s->mq, "activation_dtype")) &&
		     add_meta_num(c, "output_sqnr_db_w", s->mq, "output_sqnr_db_w") &&
		     add_meta_num(c, "output_sqnr_db_wa", s->mq, "output_sqnr_db_wa") &&
		     add_meta_num(c, "weights_only_layers", s->mq, "weights_only_layers");
	}
	if (!ok) {
		cJSON_Delete(q);
		return NULL;
	}
	return q;
}

static cJSON *json_summary(const struct summary *s, int n_tensors)
{
	cJSON *o = cJSON_CreateObject(), *d = NULL;
	int ok = o && cJSON_AddNumberToObject(o, "tensors", n_tensors) &&
		 cJSON_AddNumberToObject(o, "data_bytes", (double)s->data_bytes) &&
		 (d = cJSON_AddObjectToObject(o, "dtypes"));
	for (int k = 0; ok && k < MQ_DTYPE_COUNT; k++) {
		if (!s->n_of[k])
			continue;
		cJSON *e = cJSON_AddObjectToObject(d, mq_dtype_name((enum mq_dtype)k));
		ok = e && cJSON_AddNumberToObject(e, "tensors", s->n_of[k]) &&
		     cJSON_AddNumberToObject(e, "bytes", (double)s->bytes_of[k]);
	}
	cJSON *q = ok && s->mq ? json_mq(s) : NULL;
	ok = ok && (s->mq ? q && cJSON_AddItemToObject(o, "mq_dist", q) : cJSON_AddNullToObject(o, "mq_dist") != NULL);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* The metadata with the values that hold JSON parsed, the others as the strings they are. */
static cJSON *json_metadata(const cJSON *meta)
{
	cJSON *o = cJSON_CreateObject();
	const cJSON *it, *from = o ? meta : NULL;
	int ok = o != NULL;
	cJSON_ArrayForEach(it, from) {
		cJSON *v = cJSON_IsString(it) ? parse_json_value(it->valuestring) : NULL;
		if (!v)
			v = cJSON_Duplicate(it, 1);
		ok = ok && v && cJSON_AddItemToObject(o, it->string, v);
		if (!ok) {
			cJSON_Delete(v);
			break;
		}
	}
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *json_file(const struct mq_source_file *f, const struct file_info *fi)
{
	cJSON *o = cJSON_CreateObject(), *meta = json_metadata(fi->meta);
	int torch = f->kind == MQ_SOURCE_TORCH;
	int ok = o && meta && cJSON_AddStringToObject(o, "path", f->path) &&
		 cJSON_AddStringToObject(o, "format", torch ? "torch" : "safetensors") &&
		 cJSON_AddNumberToObject(o, "bytes", (double)f->size) && cJSON_AddNumberToObject(o, "tensors", fi->n_tensors) &&
		 (torch ? cJSON_AddNullToObject(o, "header_bytes") != NULL
			: cJSON_AddNumberToObject(o, "header_bytes", (double)fi->header_bytes) != NULL) &&
		 add_str_or_null(o, "archive", fi->archive) && add_str_or_null(o, "state_dict_key", fi->state_dict_key) &&
		 cJSON_AddNumberToObject(o, "ignored_entries", fi->n_ignored);
	int owned = ok && cJSON_AddItemToObject(o, "metadata", meta);
	if (!owned) {
		cJSON_Delete(meta);
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *json_tensor(const struct mq_manifest *m, const struct mq_tensor *t)
{
	cJSON *o = cJSON_CreateObject(), *shape = NULL;
	int ok = o && cJSON_AddStringToObject(o, "name", t->name) &&
		 cJSON_AddStringToObject(o, "dtype", mq_dtype_name(t->dtype)) && (shape = cJSON_AddArrayToObject(o, "shape"));
	for (int d = 0; ok && d < t->ndim; d++) {
		cJSON *n = cJSON_CreateNumber((double)t->shape[d]);
		ok = n && cJSON_AddItemToArray(shape, n);
		if (!ok)
			cJSON_Delete(n);
	}
	ok = ok && cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes) &&
	     cJSON_AddStringToObject(o, "file", m->files[t->file].name) &&
	     cJSON_AddBoolToObject(o, "contiguous", t->contiguous != 0);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static int print_json(const char *path, const struct mq_manifest *m, const struct file_info *fi, FILE *out,
		      struct mq_error *err)
{
	struct summary s;
	summarize(m, fi, &s);
	cJSON *root = cJSON_CreateObject(), *files = NULL, *tensors = NULL, *sum = json_summary(&s, m->n_tensors);
	int ok = root && sum && cJSON_AddStringToObject(root, "path", path) &&
		 cJSON_AddStringToObject(root, "format", m->index_name ? "index"
							: m->files[0].kind == MQ_SOURCE_TORCH ? "torch" : "safetensors");
	ok = ok && cJSON_AddItemToObject(root, "summary", sum);
	if (!ok)
		cJSON_Delete(sum);
	ok = ok && (files = cJSON_AddArrayToObject(root, "files")) && (tensors = cJSON_AddArrayToObject(root, "tensors"));
	for (int f = 0; ok && f < m->n_files; f++) {
		cJSON *j = json_file(&m->files[f], &fi[f]);
		ok = j && cJSON_AddItemToArray(files, j);
	}
	for (int i = 0; ok && i < m->n_tensors; i++) {
		cJSON *j = json_tensor(m, &m->tensors[i]);
		ok = j && cJSON_AddItemToArray(tensors, j);
	}
	char *text = ok ? cJSON_Print(root) : NULL;
	cJSON_Delete(root);
	if (!text)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	fprintf(out, "%s\n", text);
	free(text);
	return 0;
}

/* A model folder's config.json, whole (it is small: at most MQ_MAX_HEADER_BYTES). */
/* --plot: the SVG of the file's per-layer records, titled with its name, scheme and aggregate figures. */
static int print_plot(const char *path, const struct mq_manifest *m, const struct file_info *fi, FILE *out,
		      struct mq_error *err)
{
	/* every shard of an mq-dist model folder holds the whole metadata */
	const cJSON *mq = m->n_files >= 1 && meta_str(fi[0].meta, "mq_dist_version") ? fi[0].meta : NULL;
	struct mq_plot p;
	if (mq_plot_from_records(mq ? meta_str(mq, "layers") : NULL, path, &p, err))
		return err->code;
	char scheme[128], sub[320];
	double db, ratio;
	scheme_text(mq, scheme, sizeof(scheme));
	int k = snprintf(sub, sizeof(sub), "%s; %d quantized layers", scheme, p.n);
	if (meta_num(mq, "sqnr_db", &db) == 0 && k > 0 && (size_t)k < sizeof(sub))
		k += snprintf(sub + k, sizeof(sub) - (size_t)k, "; aggregate SQNR %.2f dB", db);
	if (meta_num(mq, "compression_ratio", &ratio) == 0 && k > 0 && (size_t)k < sizeof(sub))
		snprintf(sub + k, sizeof(sub) - (size_t)k, "; %.2fx smaller", ratio);
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	struct mq_buf b = MQ_BUF_INIT;
	mq_plot_svg(&b, &p, base, sub);
	mq_plot_release(&p);
	int rc = mq_buf_ok(&b) ? 0 : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	if (!rc && (fwrite(b.data, 1, b.len, out) != b.len || fflush(out) != 0))
		rc = mq_fail(err, MQ_ERR_OUTPUT, "inspect --plot: cannot write the picture: %s", strerror(errno));
	mq_buf_release(&b);
	return rc;
}

static int read_config(const struct mq_hf_folder *f, char **text, size_t *len, struct mq_error *err)
{
	struct mq_buf path = MQ_BUF_INIT;
	mq_buf_addf(&path, "%s/config.json", f->dir);
	int rc = !mq_buf_ok(&path) ? mq_fail(err, MQ_ERR_INTERNAL, "out of memory") : 0;
	if (!rc && mq_read_small(path.data, MQ_MAX_HEADER_BYTES, text, len))
		rc = mq_fail(err, errno == ENOMEM ? MQ_ERR_INTERNAL : MQ_ERR_INPUT, "cannot read '%s': %s", path.data,
			     errno == EFBIG ? "larger than 1 GiB, not a model's config" : errno ? strerror(errno)
											 : "it ended early");
	mq_buf_release(&path);
	return rc;
}

int mq_inspect(const struct mq_options *o, FILE *out, struct mq_error *err)
{
	if (mq_calib_is_hdf5(o->input)) {
		if (o->verbose || o->json || o->plot)
			return mq_fail(err, MQ_ERR_USAGE, "inspect '%s': --%s applies to model files; a calibration file's "
				       "statistics are printed as text", o->input,
				       o->json ? "json" : o->plot ? "plot" : "verbose");
		return mq_calib_inspect(o->input, &o->observer, !o->act_asymmetric, o->calib_samples, out, err);
	}
	struct mq_hf_folder folder;
	struct mq_buf weights = MQ_BUF_INIT;
	char *config = NULL;
	size_t config_len = 0;
	struct stat st;
	int is_folder = stat(o->input, &st) == 0 && S_ISDIR(st.st_mode), rc = 0;
	memset(&folder, 0, sizeof(folder));
	if (is_folder && !(rc = mq_hf_folder_scan(o->input, &folder, err))) {
		mq_buf_addf(&weights, "%s/%s", folder.dir, folder.index ? folder.index : folder.shards[0]);
		rc = read_config(&folder, &config, &config_len, err);
	}
	struct mq_manifest m;
	memset(&m, 0, sizeof(m));
	if (!rc)
		rc = mq_manifest_load(is_folder ? weights.data : o->input, &m, err);
	if (!rc && o->calib_options)
		rc = mq_fail(err, MQ_ERR_USAGE, "inspect '%s': --observer, --act and --calib-samples apply to HDF5 "
			     "calibration files, not to a model file (see --verbose and --json)", o->input);
	struct file_info *fi = rc ? NULL : calloc((size_t)m.n_files + 1, sizeof(*fi));
	if (!rc && !fi)
		rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	int n_loaded = 0;
	for (; !rc && n_loaded < m.n_files; n_loaded++)
		rc = load_file_info(&m.files[n_loaded], &fi[n_loaded], err);
	if (!rc && o->json)
		rc = print_json(o->input, &m, fi, out, err);
	else if (!rc && o->plot)
		rc = print_plot(o->input, &m, fi, out, err);
	else if (!rc)
		print_text(o->input, &m, fi, o->verbose, out);
	if (!rc && is_folder && !o->json && !o->plot)
		rc = mq_inspect_folder(&folder, &m, config, config_len, out, err);
	if (is_folder)
		mq_hf_folder_release(&folder);
	mq_buf_release(&weights);
	free(config);
	for (int f = 0; f < n_loaded; f++)
		file_info_release(&fi[f]);
	free(fi);
	mq_manifest_release(&m);
	return rc;
}
