/*
 * plot: pictures of a quantized model's layers, drawn as SVG text by our own
 * code (no dependency; a browser, an image viewer or a Markdown page shows
 * it). The layers are the per-layer records mq-dist writes into a model's
 * metadata ("layers"), in the model's depth order: names compared with their
 * numbers as numbers, so layers.2 comes before layers.10.
 *   - mq_plot_svg: SQNR (dB) and bits per weight of every quantized layer
 *     along the depth, one point and one bar per layer, each with a tooltip
 *     naming it; points coloured by their bits.
 *   - mq_plot_sparkline: a small line of the SQNR along the depth, for one
 *     row of a table (the zoo page), its weakest layer marked.
 * The same records give the same bytes.
 */
#ifndef MQ_PLOT_H
#define MQ_PLOT_H

#include "buf.h"
#include "status.h"

struct mq_plot_layer {
	char *name;      /* owned */
	double sqnr_db;  /* NAN where the record has none (no error at all) */
	double bpw;      /* output bits per weight element: bytes_out * 8 / elements */
};

struct mq_plot {
	struct mq_plot_layer *layers; /* the quantized layers, in depth order */
	int n;
};

/*
 * The quantized layers of a "layers" metadata value (a JSON object of
 * records). An error names `what` (the file) where the text is not such an
 * object or a record lacks its shape or sizes.
 */
int mq_plot_from_records(const char *json, const char *what, struct mq_plot *p, struct mq_error *err);
void mq_plot_release(struct mq_plot *p);

/* The full picture, a standalone SVG document, titled `title` with `subtitle` under it. */
void mq_plot_svg(struct mq_buf *b, const struct mq_plot *p, const char *title, const char *subtitle);
/* s as XML (and HTML) text or attribute value: <, >, & and " escaped, control characters left out. */
void mq_plot_add_xml(struct mq_buf *b, const char *s);
/* A 160 x 28 inline <svg> element of the SQNR along the depth (a flat line where all are equal). */
void mq_plot_sparkline(struct mq_buf *b, const struct mq_plot *p);

#endif
