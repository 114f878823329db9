#include "zoo.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "config.h"
#include "outmeta.h"
#include "plot.h"

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
	char shown[200];        /* the scheme as the tables show it: a mixed plan's counts ("mixed: int4-g128 12, int8 16") */
	cJSON *chosen;          /* a mixed plan's counts per candidate (owned), NULL otherwise */
	double before, after;   /* MiB */
	double ratio;           /* before / after */
	double sqnr;            /* dB, aggregate */
	char worst[512];        /* the layer with the lowest SQNR */
	double worst_db;
	struct mq_plot plot;    /* its quantized layers (none if the metadata has no records) */
	char link[320];         /* its picture, relative to the report's folder; "" if none */
};

/* f->shown and f->chosen: the scheme, or for a mixed plan the candidates chosen and how many layers each. */
static void shown_scheme(struct figures *f)
{
	const char *mp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->meta, "mixed_precision"));
	cJSON *mix = mp && f->scheme && strcmp(f->scheme, "mixed") == 0 ? cJSON_Parse(mp) : NULL;
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(mix, "chosen"), *k;
	int n = snprintf(f->shown, sizeof(f->shown), "%s", f->scheme ? f->scheme : "-"), any = 0;
	f->chosen = cJSON_IsObject(c) ? cJSON_Duplicate(c, 1) : NULL;
	cJSON_ArrayForEach(k, f->chosen) {
		if (!cJSON_IsNumber(k) || k->valuedouble < 1 || n < 0 || (size_t)n >= sizeof(f->shown))
			continue;
		n += snprintf(f->shown + n, sizeof(f->shown) - (size_t)n, "%s %s %d", any++ ? "," : ":", k->string,
			      (int)k->valuedouble);
	}
	cJSON_Delete(mix);
}

/* The figures of a model that ran (or was up to date); release them with cJSON_Delete(f->meta) and f->chosen. */
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
	shown_scheme(f);
	worst_layer(f->meta, f->worst, sizeof(f->worst), &f->worst_db);
	const char *layers = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->meta, "layers"));
	f->link[0] = '\0';
	if (!layers || mq_plot_from_records(layers, e->output, &f->plot, &me))
		memset(&f->plot, 0, sizeof(f->plot));
}

/*
 * Model i's picture, PREFIX-plots/NAME.svg (NAME with characters other than
 * letters, digits, '.', '_' and '-' as '_', and then "-i" after it, so that
 * two names cannot meet), and its link from the report's folder into f->link.
 */
static int write_plot(const char *prefix, int i, const struct mq_zoo_entry *e, struct figures *f, struct mq_error *err)
{
	if (!f->plot.n)
		return 0;
	const char *base = strrchr(prefix, '/') ? strrchr(prefix, '/') + 1 : prefix;
	char name[200];
	int changed = 0;
	size_t k = 0;
	for (const char *c = e->name; *c && k + 1 < sizeof(name); c++, k++) {
		int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("._-", *c);
		name[k] = ok && !(k == 0 && *c == '.') ? *c : '_';
		changed |= name[k] != *c;
	}
	name[k] = '\0';
	snprintf(f->link, sizeof(f->link), changed ? "%s-plots/%s-%d.svg" : "%s-plots/%s.svg", base, name, i);
	struct mq_buf path = MQ_BUF_INIT, svg = MQ_BUF_INIT, sub = MQ_BUF_INIT;
	int mk = 0;
	mq_buf_addf(&path, "%s-plots", prefix);
	if (mq_buf_ok(&path) && mkdir(path.data, 0777) != 0 && errno != EEXIST)
		mk = errno;
	path.len = 0;
	mq_buf_addf(&path, "%.*s%s", (int)(base - prefix), prefix, f->link);
	mq_buf_addf(&sub, "%s; %d quantized layers", f->shown, f->plot.n);
	if (!isnan(f->sqnr))
		mq_buf_addf(&sub, "; aggregate SQNR %.2f dB", f->sqnr);
	mq_plot_svg(&svg, &f->plot, e->name, sub.data ? sub.data : "");
	int rc = mk ? mq_fail(err, MQ_ERR_OUTPUT, "cannot make the folder '%s-plots': %s", prefix, strerror(mk))
	       : !mq_buf_ok(&path) || !mq_buf_ok(&svg) || !mq_buf_ok(&sub) ? mq_fail(err, MQ_ERR_INTERNAL, "out of memory")
									: write_text(path.data, svg.data, svg.len, err);
	mq_buf_release(&path);
	mq_buf_release(&svg);
	mq_buf_release(&sub);
	return rc;
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
	if (f->chosen)
		cJSON_AddItemToObject(m, "mixed_chosen", cJSON_Duplicate(f->chosen, 1));
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
	if (f->link[0])
		cJSON_AddStringToObject(m, "plot", f->link);
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
	md_cell(md, f->shown);
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
	if (f->link[0])
		snprintf(cell, sizeof(cell), "[plot](%s)", f->link);
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
			"| worst layer | layers | time (s) |\n"
			"|---|---|---|---:|---:|---:|---:|---|---|---:|\n");
}

/* The page's head and table header: a standalone HTML file that opens without a server. */
static void html_head(struct mq_buf *h, const char *job_file)
{
	mq_buf_adds(h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Zoo report: ");
	mq_plot_add_xml(h, job_file);
	mq_buf_adds(h, "</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
		       "td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:middle}"
		       "td.n{text-align:right}.failed{color:#c0392b}</style></head><body>\n<h1>Zoo report: ");
	mq_plot_add_xml(h, job_file);
	mq_buf_adds(h, "</h1>\n<table>\n<tr><th>model</th><th>status</th><th>scheme</th><th>size before</th>"
		       "<th>size after</th><th>compression</th><th>SQNR (dB)</th><th>worst layer</th>"
		       "<th>layers (SQNR along the depth)</th><th>time (s)</th></tr>\n");
}

static void html_cell(struct mq_buf *h, const char *cls, const char *text)
{
	mq_buf_addf(h, "<td%s%s%s>", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "");
	mq_plot_add_xml(h, text);
	mq_buf_adds(h, "</td>");
}

/* A model's row: the Markdown row's figures, and its sparkline linked to its picture. */
static void html_row(struct mq_buf *h, const struct mq_zoo_entry *e, const struct figures *f)
{
	char cell[640];
	mq_buf_adds(h, "<tr>");
	html_cell(h, NULL, e->name);
	snprintf(cell, sizeof(cell), "%s%s%s", zoo_status(e), e->code ? ": " : "", e->code ? e->message : "");
	html_cell(h, e->code ? "failed" : NULL, cell);
	html_cell(h, NULL, f->shown);
	snprintf(cell, sizeof(cell), isnan(f->before) ? "-" : "%.1f MiB", f->before);
	html_cell(h, "n", cell);
	snprintf(cell, sizeof(cell), isnan(f->after) ? "-" : "%.1f MiB", f->after);
	html_cell(h, "n", cell);
	snprintf(cell, sizeof(cell), isnan(f->ratio) ? "-" : "%.2fx", f->ratio);
	html_cell(h, "n", cell);
	snprintf(cell, sizeof(cell), isnan(f->sqnr) ? "-" : "%.2f", f->sqnr);
	html_cell(h, "n", cell);
	if (f->worst[0])
		snprintf(cell, sizeof(cell), "%s (%.2f dB)", f->worst, f->worst_db);
	html_cell(h, NULL, f->worst[0] ? cell : "-");
	if (f->link[0]) {
		mq_buf_adds(h, "<td><a href=\"");
		mq_plot_add_xml(h, f->link);
		mq_buf_adds(h, "\">");
		mq_plot_sparkline(h, &f->plot);
		mq_buf_adds(h, "</a></td>");
	} else {
		html_cell(h, NULL, "-");
	}
	snprintf(cell, sizeof(cell), "%.2f", e->seconds);
	html_cell(h, "n", cell);
	mq_buf_adds(h, "</tr>\n");
}

/* How many models were quantized, up to date, failed or not run. */
struct tally {
	int ok, skipped, failed;
};

/* The counts, in JSON after the models and as the Markdown's closing line. */
static void report_summary(cJSON *root, struct mq_buf *md, struct mq_buf *html, int n, const struct tally *t)
{
	cJSON *sum = cJSON_AddObjectToObject(root, "summary");
	cJSON_AddNumberToObject(sum, "models", n);
	cJSON_AddNumberToObject(sum, "ok", t->ok);
	cJSON_AddNumberToObject(sum, "up_to_date", t->skipped);
	cJSON_AddNumberToObject(sum, "failed", t->failed);
	mq_buf_addf(md, "\n%d models: %d quantized, %d up to date, %d failed or not run.\n", n, t->ok, t->skipped,
		    t->failed);
	mq_buf_addf(html, "</table>\n<p>%d models: %d quantized, %d up to date, %d failed or not run.</p>\n</body></html>\n",
		    n, t->ok, t->skipped, t->failed);
}

/* PREFIX.json, PREFIX.md and PREFIX.html, then the table on stdout (rank 0, unless quiet). */
static int write_files(const char *prefix, const char *json, const struct mq_buf *md, const struct mq_buf *html,
		       struct mq_error *err)
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
	path.len = 0;
	mq_buf_addf(&path, "%s.html", prefix);
	if (!rc && mq_buf_ok(&path))
		rc = write_text(path.data, html->data, html->len, err);
	if (!rc && mq_log_rank() == 0 && !mq_log_quiet()) {
		printf("\n%s\n", md->data); /* its cells are escaped (md_cell) */
		mq_print(stdout, "zoo report: %s.json, %s.md, %s.html\n", prefix, prefix, prefix);
	}
	mq_buf_release(&path);
	return rc;
}

int mq_report_zoo(const char *prefix, const char *job_file, const struct mq_zoo_entry *z, int n,
		  struct mq_error *err)
{
	cJSON *root = cJSON_CreateObject(), *models = cJSON_CreateArray();
	struct mq_buf md = MQ_BUF_INIT, html = MQ_BUF_INIT;
	struct tally t = { 0, 0, 0 };
	int rc = 0;
	report_head(root, models, &md, job_file);
	html_head(&html, job_file);
	for (int i = 0; i < n; i++) {
		const struct mq_zoo_entry *e = &z[i];
		struct figures f;
		figures_read(e, &f);
		if (!rc)
			rc = write_plot(prefix, i, e, &f, err);
		t.ok += !e->code && !e->skipped;
		t.skipped += !e->code && e->skipped;
		t.failed += e->code != 0;
		cJSON_AddItemToArray(models, model_json(e, &f));
		model_md_row(&md, e, &f);
		html_row(&html, e, &f);
		mq_plot_release(&f.plot);
		cJSON_Delete(f.meta);
		cJSON_Delete(f.chosen);
	}
	report_summary(root, &md, &html, n, &t);
	char *json = cJSON_Print(root);
	cJSON_Delete(root);
	if (!rc)
		rc = !json || !mq_buf_ok(&md) || !mq_buf_ok(&html) ? mq_fail(err, MQ_ERR_INTERNAL, "out of memory")
								    : write_files(prefix, json, &md, &html, err);
	free(json);
	mq_buf_release(&md);
	mq_buf_release(&html);
	return rc;
}
