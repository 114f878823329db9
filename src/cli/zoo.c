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

/* What the report shows of one model, from its output's metadata (NAN, NULL or "" where it has none). */
struct figures {
	cJSON *meta;            /* the output's metadata, NULL if it failed; owns scheme */
	const char *scheme;
	double before, after;   /* MiB */
	double ratio;           /* before / after */
	double sqnr;            /* dB, aggregate */
	char worst[512];        /* the layer with the lowest SQNR */
	double worst_db;
};

/* The figures of a model that ran (or was up to date); release them with cJSON_Delete(f->meta). */
static void figures_read(const struct mq_zoo_entry *e, struct figures *f)
{
	struct mq_error me = { 0 };
	f->meta = NULL;
	if (!e->code)
		mq_output_metadata(e->output, &f->meta, &me);
	f->before = meta_num(f->meta, "original_size_mb");
	f->after = meta_num(f->meta, "quantized_size_mb");
	f->ratio = meta_num(f->meta, "compression_ratio");
	f->sqnr = meta_num(f->meta, "sqnr_db");
	f->scheme = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->meta, "scheme"));
	worst_layer(f->meta, f->worst, sizeof(f->worst), &f->worst_db);
}

/* A model's object in the JSON report. */
static cJSON *model_json(const struct mq_zoo_entry *e, const struct figures *f)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "name", e->name);
	cJSON_AddStringToObject(m, "status", zoo_status(e));
	cJSON_AddStringToObject(m, "input", e->input);
	cJSON_AddStringToObject(m, "output", e->output);
	cJSON_AddNumberToObject(m, "exit_code", mq_status_exit_code(e->code));
	if (e->code)
		cJSON_AddStringToObject(m, "error", e->message);
	if (f->scheme)
		cJSON_AddStringToObject(m, "scheme", f->scheme);
	if (!isnan(f->before)) {
		cJSON_AddNumberToObject(m, "size_before_mib", f->before);
		cJSON_AddNumberToObject(m, "size_after_mib", f->after);
		cJSON_AddNumberToObject(m, "compression_ratio", f->ratio);
	}
	if (!isnan(f->sqnr))
		cJSON_AddNumberToObject(m, "sqnr_db", f->sqnr);
	if (f->worst[0]) {
		cJSON_AddStringToObject(m, "worst_layer", f->worst);
		cJSON_AddNumberToObject(m, "worst_layer_sqnr_db", f->worst_db);
	}
	cJSON_AddNumberToObject(m, "time_s", e->seconds);
	return m;
}

/* A model's row of the Markdown table. */
static void model_md_row(struct mq_buf *md, const struct mq_zoo_entry *e, const struct figures *f)
{
	char cell[640];
	mq_buf_adds(md, "| ");
	md_cell(md, e->name);
	snprintf(cell, sizeof(cell), "%s%s%s", zoo_status(e), e->code ? ": " : "", e->code ? e->message : "");
	md_cell(md, cell);
	md_cell(md, f->scheme ? f->scheme : "-");
	snprintf(cell, sizeof(cell), isnan(f->before) ? "-" : "%.1f MiB", f->before);
	md_cell(md, cell);
	snprintf(cell, sizeof(cell), isnan(f->after) ? "-" : "%.1f MiB", f->after);
	md_cell(md, cell);
	snprintf(cell, sizeof(cell), isnan(f->ratio) ? "-" : "%.2fx", f->ratio);
	md_cell(md, cell);
	snprintf(cell, sizeof(cell), isnan(f->sqnr) ? "-" : "%.2f", f->sqnr);
	md_cell(md, cell);
	if (f->worst[0])
		snprintf(cell, sizeof(cell), "%s (%.2f dB)", f->worst, f->worst_db);
	else
		snprintf(cell, sizeof(cell), "-");
	md_cell(md, cell);
	snprintf(cell, sizeof(cell), "%.2f", e->seconds);
	md_cell(md, cell);
	md->len -= 1; /* the last cell's trailing space */
	mq_buf_adds(md, "\n");
}

/* The report's head: the job and the tool in JSON (before its models), the title and table header in Markdown. */
static void report_head(cJSON *root, cJSON *models, struct mq_buf *md, const char *job_file)
{
	cJSON_AddStringToObject(root, "job", job_file);
	cJSON_AddStringToObject(root, "tool", "mq-dist " MQ_VERSION);
	cJSON_AddItemToObject(root, "models", models);
	mq_buf_adds(md, "# Zoo report: ");
	mq_buf_add_escaped(md, job_file, strlen(job_file));
	mq_buf_adds(md, "\n\n");
	mq_buf_adds(md, "| model | status | scheme | size before | size after | compression | SQNR (dB) "
			"| worst layer | time (s) |\n"
			"|---|---|---|---:|---:|---:|---:|---|---:|\n");
}

/* How many models were quantized, up to date, failed or not run. */
struct tally {
	int ok, skipped, failed;
};

/* The counts, in JSON after the models and as the Markdown's closing line. */
static void report_summary(cJSON *root, struct mq_buf *md, int n, const struct tally *t)
{
	cJSON *sum = cJSON_AddObjectToObject(root, "summary");
	cJSON_AddNumberToObject(sum, "models", n);
	cJSON_AddNumberToObject(sum, "ok", t->ok);
	cJSON_AddNumberToObject(sum, "up_to_date", t->skipped);
	cJSON_AddNumberToObject(sum, "failed", t->failed);
	mq_buf_addf(md, "\n%d models: %d quantized, %d up to date, %d failed or not run.\n", n, t->ok, t->skipped,
		    t->failed);
}

/* PREFIX.json and PREFIX.md, then the table on stdout (rank 0, unless quiet). */
static int write_files(const char *prefix, const char *json, const struct mq_buf *md, struct mq_error *err)
{
	struct mq_buf path = MQ_BUF_INIT;
	int rc = 0;
	mq_buf_addf(&path, "%s.json", prefix);
	if (mq_buf_ok(&path))
		rc = write_text(path.data, json, strlen(json), err);
	path.len = 0;
	mq_buf_addf(&path, "%s.md", prefix);
	if (!rc && mq_buf_ok(&path))
		rc = write_text(path.data, md->data, md->len, err);
	if (!rc && mq_log_rank() == 0 && !mq_log_quiet()) {
		printf("\n%s\n", md->data); /* its cells are escaped (md_cell) */
		mq_print(stdout, "zoo report: %s.json, %s.md\n", prefix, prefix);
	}
	mq_buf_release(&path);
	return rc;
}

int mq_report_zoo(const char *prefix, const char *job_file, const struct mq_zoo_entry *z, int n,
		  struct mq_error *err)
{
	cJSON *root = cJSON_CreateObject(), *models = cJSON_CreateArray();
	struct mq_buf md = MQ_BUF_INIT;
	struct tally t = { 0, 0, 0 };
	report_head(root, models, &md, job_file);
	for (int i = 0; i < n; i++) {
		const struct mq_zoo_entry *e = &z[i];
		struct figures f;
		figures_read(e, &f);
		t.ok += !e->code && !e->skipped;
		t.skipped += !e->code && e->skipped;
		t.failed += e->code != 0;
		cJSON_AddItemToArray(models, model_json(e, &f));
		model_md_row(&md, e, &f);
		cJSON_Delete(f.meta);
	}
	report_summary(root, &md, n, &t);
	char *json = cJSON_Print(root);
	cJSON_Delete(root);
	int rc = !json || !mq_buf_ok(&md) ? mq_fail(err, MQ_ERR_INTERNAL, "out of memory")
					 : write_files(prefix, json, &md, err);
	free(json);
	mq_buf_release(&md);
	return rc;
}
