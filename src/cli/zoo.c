#include "zoo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "config.h"
#include "outmeta.h"

static const char *zoo_status(const struct mq_zoo_entry *z)
{
	if (z->code == MQ_ERR_INTERRUPTED)
		return "interrupted";
	if (z->code)
		return "failed";
	return z->skipped ? "up to date" : "ok";
}

/* A metadata value that holds a number as a string ("12.5"), or NAN. */
static double meta_num(const cJSON *meta, const char *key)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, key));
	char *end;
	if (!v)
		return (double)NAN;
	double d = strtod(v, &end);
	return end != v ? d : (double)NAN;
}

/* The quantized layer with the lowest SQNR, from the metadata's "layers" record. */
static void worst_layer(const cJSON *meta, char *name, size_t cap, double *sqnr)
{
	*sqnr = (double)NAN;
	name[0] = '\0';
	const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "layers"));
	cJSON *layers = cJSON_Parse(text ? text : "");
	const cJSON *it;
	cJSON_ArrayForEach(it, layers) {
		const cJSON *q = cJSON_GetObjectItemCaseSensitive(it, "sqnr_db");
		if (!cJSON_IsNumber(q))
			continue;
		if (isnan(*sqnr) || q->valuedouble < *sqnr) {
			*sqnr = q->valuedouble;
			snprintf(name, cap, "%s", it->string);
		}
	}
	cJSON_Delete(layers);
}

static int write_text(const char *path, const char *text, size_t len, struct mq_error *err)
{
	struct mq_buf tmp = MQ_BUF_INIT;
	mq_buf_addf(&tmp, "%s.tmp", path);
	FILE *f = mq_buf_ok(&tmp) ? fopen(tmp.data, "w") : NULL;
	int ok = f && fwrite(text, 1, len, f) == len;
	if (f && fclose(f) != 0)
		ok = 0;
	if (ok && rename(tmp.data, path) != 0)
		ok = 0;
	if (!ok && tmp.data)
		unlink(tmp.data);
	mq_buf_release(&tmp);
	return ok ? 0 : mq_fail(err, MQ_ERR_OUTPUT, "cannot write '%s'", path);
}

/* A table cell: '|' escaped for Markdown, control characters as in messages (mq_buf_add_escaped). */
static void md_cell(struct mq_buf *b, const char *s)
{
	for (;;) {
		size_t n = strcspn(s, "|");
		mq_buf_add_escaped(b, s, n);
		if (!s[n])
			break;
		mq_buf_adds(b, "\\|");
		s += n + 1;
	}
	mq_buf_adds(b, " | ");
}

int mq_report_zoo(const char *prefix, const char *job_file, const struct mq_zoo_entry *z, int n,
		  struct mq_error *err)
{
	cJSON *root = cJSON_CreateObject(), *models = cJSON_CreateArray();
	struct mq_buf md = MQ_BUF_INIT;
	int n_ok = 0, n_skip = 0, n_fail = 0;
	cJSON_AddStringToObject(root, "job", job_file);
	cJSON_AddStringToObject(root, "tool", "mq-dist " MQ_VERSION);
	cJSON_AddItemToObject(root, "models", models);
	mq_buf_adds(&md, "# Zoo report: ");
	mq_buf_add_escaped(&md, job_file, strlen(job_file));
	mq_buf_adds(&md, "\n\n");
	mq_buf_adds(&md, "| model | status | scheme | size before | size after | compression | SQNR (dB) | worst layer | time (s) |\n"
			 "|---|---|---|---:|---:|---:|---:|---|---:|\n");
	for (int i = 0; i < n; i++) {
		const struct mq_zoo_entry *e = &z[i];
		cJSON *m = cJSON_CreateObject(), *meta = NULL;
		struct mq_error me = { 0 };
		if (!e->code)
			mq_output_metadata(e->output, &meta, &me);
		double before = meta_num(meta, "original_size_mb"), after = meta_num(meta, "quantized_size_mb");
		double ratio = meta_num(meta, "compression_ratio"), sqnr = meta_num(meta, "sqnr_db"), worst_db;
		const char *scheme = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "scheme"));
		char worst[512];
		worst_layer(meta, worst, sizeof(worst), &worst_db);
		n_ok += !e->code && !e->skipped;
		n_skip += !e->code && e->skipped;
		n_fail += e->code != 0;
		cJSON_AddStringToObject(m, "name", e->name);
		cJSON_AddStringToObject(m, "status", zoo_status(e));
		cJSON_AddStringToObject(m, "input", e->input);
		cJSON_AddStringToObject(m, "output", e->output);
		cJSON_AddNumberToObject(m, "exit_code", mq_status_exit_code(e->code));
		if (e->code)
			cJSON_AddStringToObject(m, "error", e->message);
		if (scheme)
			cJSON_AddStringToObject(m, "scheme", scheme);
		if (!isnan(before)) {
			cJSON_AddNumberToObject(m, "size_before_mib", before);
			cJSON_AddNumberToObject(m, "size_after_mib", after);
			cJSON_AddNumberToObject(m, "compression_ratio", ratio);
		}
		if (!isnan(sqnr))
			cJSON_AddNumberToObject(m, "sqnr_db", sqnr);
		if (worst[0]) {
			cJSON_AddStringToObject(m, "worst_layer", worst);
			cJSON_AddNumberToObject(m, "worst_layer_sqnr_db", worst_db);
		}
		cJSON_AddNumberToObject(m, "time_s", e->seconds);
		cJSON_AddItemToArray(models, m);
		mq_buf_adds(&md, "| ");
		md_cell(&md, e->name);
		char cell[640];
		snprintf(cell, sizeof(cell), "%s%s%s", zoo_status(e), e->code ? ": " : "", e->code ? e->message : "");
		md_cell(&md, cell);
		md_cell(&md, scheme ? scheme : "-");
		snprintf(cell, sizeof(cell), isnan(before) ? "-" : "%.1f MiB", before);
		md_cell(&md, cell);
		snprintf(cell, sizeof(cell), isnan(after) ? "-" : "%.1f MiB", after);
		md_cell(&md, cell);
		snprintf(cell, sizeof(cell), isnan(ratio) ? "-" : "%.2fx", ratio);
		md_cell(&md, cell);
		snprintf(cell, sizeof(cell), isnan(sqnr) ? "-" : "%.2f", sqnr);
		md_cell(&md, cell);
		if (worst[0])
			snprintf(cell, sizeof(cell), "%s (%.2f dB)", worst, worst_db);
		else
			snprintf(cell, sizeof(cell), "-");
		md_cell(&md, cell);
		snprintf(cell, sizeof(cell), "%.2f", e->seconds);
		md_cell(&md, cell);
		md.len -= 1; /* the last cell's trailing space */
		mq_buf_adds(&md, "\n");
		cJSON_Delete(meta);
	}
	cJSON *sum = cJSON_AddObjectToObject(root, "summary");
	cJSON_AddNumberToObject(sum, "models", n);
	cJSON_AddNumberToObject(sum, "ok", n_ok);
	cJSON_AddNumberToObject(sum, "up_to_date", n_skip);
	cJSON_AddNumberToObject(sum, "failed", n_fail);
	mq_buf_addf(&md, "\n%d models: %d quantized, %d up to date, %d failed or not run.\n", n, n_ok, n_skip, n_fail);
	char *json = cJSON_Print(root);
	cJSON_Delete(root);
	struct mq_buf path = MQ_BUF_INIT;
	int rc = 0;
	if (!json || !mq_buf_ok(&md))
		rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	mq_buf_addf(&path, "%s.json", prefix);
	if (!rc && mq_buf_ok(&path))
		rc = write_text(path.data, json, strlen(json), err);
	path.len = 0;
	mq_buf_addf(&path, "%s.md", prefix);
	if (!rc && mq_buf_ok(&path))
		rc = write_text(path.data, md.data, md.len, err);
	if (!rc && mq_log_rank() == 0 && !mq_log_quiet()) {
		printf("\n%s\n", md.data); /* its cells are escaped (md_cell) */
		mq_print(stdout, "zoo report: %s.json, %s.md\n", prefix, prefix);
	}
	free(json);
	mq_buf_release(&md);
	mq_buf_release(&path);
	return rc;
}
