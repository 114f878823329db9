#include "plot.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Names with their digit runs compared as numbers ("layers.2." < "layers.10."); equal numbers by their text. */
static int natural_cmp(const char *a, const char *b)
{
	while (*a && *b) {
		if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
			const char *x = a, *y = b;
			while (*x == '0' && isdigit((unsigned char)x[1]))
				x++;
			while (*y == '0' && isdigit((unsigned char)y[1]))
				y++;
			size_t nx = 0, ny = 0;
			while (isdigit((unsigned char)x[nx]))
				nx++;
			while (isdigit((unsigned char)y[ny]))
				ny++;
			if (nx != ny)
				return nx < ny ? -1 : 1;
			int c = memcmp(x, y, nx);
			if (c)
				return c;
			a = x + nx;
			b = y + ny;
			continue;
		}
		if (*a != *b)
			return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
		a++;
		b++;
	}
	return ((unsigned char)*a > (unsigned char)*b) - ((unsigned char)*a < (unsigned char)*b);
}

static int cmp_layer(const void *x, const void *y)
{
	const struct mq_plot_layer *a = x, *b = y;
	int c = natural_cmp(a->name, b->name);
	return c ? c : strcmp(a->name, b->name);
}

/* A record's bits per weight: its output bytes over the elements of its shape; -1 if it has neither. */
static double record_bpw(const cJSON *rec)
{
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(rec, "shape"), *d;
	const cJSON *out = cJSON_GetObjectItemCaseSensitive(rec, "bytes_out");
	double elems = 1;
	if (!cJSON_IsArray(shape) || !cJSON_IsNumber(out))
		return -1;
	cJSON_ArrayForEach(d, shape) {
		if (!cJSON_IsNumber(d) || d->valuedouble < 0)
			return -1;
		elems *= d->valuedouble;
	}
	return elems > 0 ? out->valuedouble * 8 / elems : -1;
}

int mq_plot_from_records(const char *json, const char *what, struct mq_plot *p, struct mq_error *err)
{
	memset(p, 0, sizeof(*p));
	cJSON *j = json ? cJSON_Parse(json) : NULL, *rec;
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': its metadata has no per-layer records (\"layers\"): was it written "
			       "by mq-dist?", what);
	}
	p->layers = calloc((size_t)cJSON_GetArraySize(j) + 1, sizeof(*p->layers));
	int rc = p->layers ? 0 : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	cJSON_ArrayForEach(rec, j) {
		const cJSON *action = cJSON_GetObjectItemCaseSensitive(rec, "action");
		if (rc || !cJSON_IsString(action) || strcmp(action->valuestring, "quantized") != 0)
			continue;
		const cJSON *db = cJSON_GetObjectItemCaseSensitive(rec, "sqnr_db");
		struct mq_plot_layer *l = &p->layers[p->n];
		l->bpw = record_bpw(rec);
		if (l->bpw < 0) {
			rc = mq_fail(err, MQ_ERR_INPUT, "'%s': the record of layer '%s' lacks its shape or bytes_out", what,
				     rec->string);
			break;
		}
		l->sqnr_db = cJSON_IsNumber(db) ? db->valuedouble : (double)NAN;
		l->name = strdup(rec->string);
		if (!l->name)
			rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
		else
			p->n++;
	}
	cJSON_Delete(j);
	if (rc)
		mq_plot_release(p);
	else
		qsort(p->layers, (size_t)p->n, sizeof(*p->layers), cmp_layer);
	return rc;
}

void mq_plot_release(struct mq_plot *p)
{
	for (int i = 0; i < p->n; i++)
		free(p->layers[i].name);
	free(p->layers);
	memset(p, 0, sizeof(*p));
}

void mq_plot_add_xml(struct mq_buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': mq_buf_adds(b, "&lt;"); break;
		case '>': mq_buf_adds(b, "&gt;"); break;
		case '&': mq_buf_adds(b, "&amp;"); break;
		case '"': mq_buf_adds(b, "&quot;"); break;
		default:
			if ((unsigned char)*s >= 0x20 || *s == '\t')
				mq_buf_add(b, s, 1);
		}
	}
}

/* The SQNR's extent, to a multiple of 5 dB, at least 5 dB wide; 0 if no layer has a figure. */
static int db_range(const struct mq_plot *p, double *lo, double *hi)
{
	double mn = (double)INFINITY, mx = -(double)INFINITY;
	for (int i = 0; i < p->n; i++)
		if (isfinite(p->layers[i].sqnr_db)) {
			mn = fmin(mn, p->layers[i].sqnr_db);
			mx = fmax(mx, p->layers[i].sqnr_db);
		}
	if (!isfinite(mn))
		return 0;
	*lo = floor(mn / 5) * 5;
	*hi = ceil(mx / 5) * 5;
	if (*hi - *lo < 5)
		*hi = *lo + 5;
	return 1;
}

/* One colour per width: 4 bits or fewer, up to 8, more. */
static const char *bits_colour(double bpw)
{
	return bpw < 6 ? "#d95f02" : bpw < 12 ? "#1b9e77" : "#7570b3";
}

enum { W = 960, LEFT = 64, RIGHT = 24, TOP = 56, DB_H = 220, GAP = 36, BITS_H = 90, BOTTOM = 48 };
#define H (TOP + DB_H + GAP + BITS_H + BOTTOM)

static double x_of(int i, int n)
{
	return LEFT + (i + 0.5) * (double)(W - LEFT - RIGHT) / (n > 0 ? n : 1);
}

/* Horizontal grid lines with labels at the left: from lo to hi in steps of step, over a panel at y0 of height h. */
static void grid(struct mq_buf *b, double lo, double hi, double step, int y0, int h, const char *unit)
{
	for (double v = lo; v <= hi + step * 1e-9; v += step) {
		double y = y0 + h - (v - lo) / (hi - lo) * h;
		mq_buf_addf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", LEFT, y, W - RIGHT,
			    y);
		mq_buf_addf(b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g%s</text>\n", LEFT - 6,
			    y + 4, v, unit);
	}
}

/* The depth along the x axis: the first number in each name, labelled where it changes (at most about 24 labels). */
static void depth_axis(struct mq_buf *b, const struct mq_plot *p, int y)
{
	long last = -1;
	int every = 1, marks = 0;
	for (int i = 0; i < p->n; i++) {
		const char *d = p->layers[i].name;
		while (*d && !isdigit((unsigned char)*d))
			d++;
		long k = *d ? strtol(d, NULL, 10) : -1;
		marks += k != last;
		last = k;
	}
	every = marks > 24 ? (marks + 23) / 24 : 1;
	last = -1;
	for (int i = 0, m = 0; i < p->n; i++) {
		const char *d = p->layers[i].name;
		while (*d && !isdigit((unsigned char)*d))
			d++;
		long k = *d ? strtol(d, NULL, 10) : -1;
		if (k != last && k >= 0 && m++ % every == 0)
			mq_buf_addf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"11\">%ld</text>\n",
				    x_of(i, p->n), y, k);
		last = k;
	}
	mq_buf_addf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\">layer (depth order)</text>\n",
		    (LEFT + W - RIGHT) / 2, y + 22);
}

static void tooltip(struct mq_buf *b, const struct mq_plot_layer *l)
{
	mq_buf_adds(b, "<title>");
	mq_plot_add_xml(b, l->name);
	if (isfinite(l->sqnr_db))
		mq_buf_addf(b, ": %.2f dB, %.3f bits per weight</title>", l->sqnr_db, l->bpw);
	else
		mq_buf_addf(b, ": no error, %.3f bits per weight</title>", l->bpw);
}

static void sqnr_panel(struct mq_buf *b, const struct mq_plot *p)
{
	double lo, hi;
	mq_buf_addf(b, "<text x=\"%d\" y=\"%d\" font-size=\"12\">SQNR (dB, higher is better)</text>\n", LEFT, TOP - 8);
	if (!db_range(p, &lo, &hi))
		return;
	grid(b, lo, hi, hi - lo > 60 ? 10 : 5, TOP, DB_H, "");
	mq_buf_adds(b, "<polyline fill=\"none\" stroke=\"#999\" stroke-width=\"1\" points=\"");
	for (int i = 0; i < p->n; i++)
		if (isfinite(p->layers[i].sqnr_db))
			mq_buf_addf(b, "%.1f,%.1f ", x_of(i, p->n), TOP + DB_H - (p->layers[i].sqnr_db - lo) / (hi - lo) * DB_H);
	mq_buf_adds(b, "\"/>\n");
	for (int i = 0; i < p->n; i++) {
		const struct mq_plot_layer *l = &p->layers[i];
		if (!isfinite(l->sqnr_db))
			continue;
		mq_buf_addf(b, "<circle class=\"layer\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\">", x_of(i, p->n),
			    TOP + DB_H - (l->sqnr_db - lo) / (hi - lo) * DB_H, bits_colour(l->bpw));
		tooltip(b, l);
		mq_buf_adds(b, "</circle>\n");
	}
}

static void bits_panel(struct mq_buf *b, const struct mq_plot *p)
{
	const int y0 = TOP + DB_H + GAP;
	double mx = 1;
	for (int i = 0; i < p->n; i++)
		mx = fmax(mx, p->layers[i].bpw);
	double step = 1;
	while (ceil(mx / step) > 4)
		step *= 2;
	double hi = ceil(mx / step) * step;
	mq_buf_addf(b, "<text x=\"%d\" y=\"%d\" font-size=\"12\">bits per weight</text>\n", LEFT, y0 - 8);
	grid(b, 0, hi, step, y0, BITS_H, "");
	double w = (double)(W - LEFT - RIGHT) / (p->n > 0 ? p->n : 1) * 0.8;
	for (int i = 0; i < p->n; i++) {
		const struct mq_plot_layer *l = &p->layers[i];
		double h = l->bpw / hi * BITS_H;
		mq_buf_addf(b, "<rect class=\"bits\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">",
			    x_of(i, p->n) - w / 2, y0 + BITS_H - h, w, h, bits_colour(l->bpw));
		tooltip(b, l);
		mq_buf_adds(b, "</rect>\n");
	}
}

void mq_plot_svg(struct mq_buf *b, const struct mq_plot *p, const char *title, const char *subtitle)
{
	mq_buf_addf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		    "font-family=\"sans-serif\">\n", W, H, W, H);
	mq_buf_addf(b, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H);
	mq_buf_addf(b, "<text x=\"%d\" y=\"20\" font-size=\"15\" font-weight=\"bold\">", LEFT);
	mq_plot_add_xml(b, title);
	mq_buf_addf(b, "</text>\n<text x=\"%d\" y=\"36\" font-size=\"12\" fill=\"#555\">", LEFT);
	mq_plot_add_xml(b, subtitle);
	mq_buf_adds(b, "</text>\n");
	static const struct {
		const char *text;
		double bpw;
	} legend[] = { { "4 bits or fewer", 4 }, { "5 to 8 bits", 8 }, { "more", 16 } };
	for (int k = 0; k < 3; k++) {
		int x = W - RIGHT - 300 + k * 110;
		mq_buf_addf(b, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" font-size=\"11\">"
			    "%s</text>\n", x, TOP - 12, bits_colour(legend[k].bpw), x + 8, TOP - 8, legend[k].text);
	}
	sqnr_panel(b, p);
	bits_panel(b, p);
	depth_axis(b, p, TOP + DB_H + GAP + BITS_H + 16);
	mq_buf_adds(b, "</svg>\n");
}

void mq_plot_sparkline(struct mq_buf *b, const struct mq_plot *p)
{
	const int w = 160, h = 28, pad = 3;
	double lo, hi;
	mq_buf_addf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">", w, h,
		    w, h);
	int have = db_range(p, &lo, &hi), weakest = -1;
	if (have) {
		mq_buf_adds(b, "<polyline fill=\"none\" stroke=\"#1b6ca8\" stroke-width=\"1.2\" points=\"");
		for (int i = 0; i < p->n; i++) {
			const struct mq_plot_layer *l = &p->layers[i];
			if (!isfinite(l->sqnr_db))
				continue;
			if (weakest < 0 || l->sqnr_db < p->layers[weakest].sqnr_db)
				weakest = i;
			double x = pad + (p->n > 1 ? (double)i / (p->n - 1) : 0.5) * (w - 2 * pad);
			mq_buf_addf(b, "%.1f,%.1f ", x, pad + (hi - l->sqnr_db) / (hi - lo) * (h - 2 * pad));
		}
		mq_buf_adds(b, "\"/>");
	}
	if (weakest >= 0) {
		const struct mq_plot_layer *l = &p->layers[weakest];
		double x = pad + (p->n > 1 ? (double)weakest / (p->n - 1) : 0.5) * (w - 2 * pad);
		mq_buf_addf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"#c0392b\">", x,
			    pad + (hi - l->sqnr_db) / (hi - lo) * (h - 2 * pad));
		tooltip(b, l);
		mq_buf_adds(b, "</circle>");
	}
	mq_buf_adds(b, "</svg>");
}
