#include "metadata.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define NUM_WIDTH 16 /* widest %.9g of a double: -1.23456789e-308 */

double mq_sqnr_db(double signal, double noise)
{
	if (noise <= 0.0)
		return (double)INFINITY;
	return 10.0 * log10(signal / noise);
}

double mq_metadata_aggregate_sqnr(const struct mq_plan *p, const struct mq_tensor_result *res)
{
	double s = 0.0, n = 0.0;
	for (int i = 0; i < p->n_tensors; i++) {
		if (p->tensors[i].action != MQ_ACT_QUANT)
			continue;
		s += res[i].signal;
		n += res[i].noise;
	}
	return p->n_quantized ? mq_sqnr_db(s, n) : (double)NAN;
}

double mq_metadata_output_noise(const struct mq_plan_tensor *pt, const struct mq_tensor_result *r, int with_act)
{
	return with_act && pt->act_rank >= 0 ? r->out_noise_wa : r->out_noise_w;
}

double mq_metadata_output_sqnr(const struct mq_plan *p, const struct mq_tensor_result *res, int with_act)
{
	double s = 0.0, n = 0.0;
	for (int i = 0; i < p->n_tensors; i++) {
		if (p->tensors[i].calib != MQ_CALIB_STATIC)
			continue;
		s += res[i].out_signal;
		n += mq_metadata_output_noise(&p->tensors[i], &res[i], with_act);
	}
	return p->n_calibrated ? mq_sqnr_db(s, n) : (double)NAN;
}

void mq_metadata_source_digest(const struct mq_plan *p, const struct mq_tensor_result *res, enum mq_digest_algo a,
			       uint8_t out[MQ_DIGEST_MAX])
{
	struct mq_hasher h;
	if (mq_hasher_init(&h, a)) {
		memset(out, 0, MQ_DIGEST_MAX);
		return;
	}
	for (int i = 0; i < p->n_tensors; i++)
		mq_hasher_update(&h, res[i].sha256, mq_digest_len(a));
	mq_hasher_final(&h, out);
}

static void num(struct mq_buf *b, const struct mq_tensor_result *res, double v)
{
	if (!res) {
		for (int i = 0; i < NUM_WIDTH; i++)
			mq_buf_add(b, "0", 1);
	} else {
		mq_buf_add_json_num(b, v);
	}
}

static void shape_json(struct mq_buf *b, const uint64_t *shape, int ndim)
{
	mq_buf_adds(b, "[");
	for (int d = 0; d < ndim; d++)
		mq_buf_addf(b, d ? ",%llu" : "%llu", (unsigned long long)shape[d]);
	mq_buf_adds(b, "]");
}

static void digest_json(struct mq_buf *b, const struct mq_options *o, const uint8_t *d)
{
	char hex[2 * MQ_DIGEST_MAX + 1];
	const size_t len = mq_digest_len(o->digest);
	if (o->no_checksum) {
		mq_buf_adds(b, "null");
		return;
	}
	if (d)
		mq_hex(d, len, hex);
	else
		memset(hex, '0', 2 * len), hex[2 * len] = '\0';
	mq_buf_add_json_str(b, hex);
}

/* A calibrated layer's additions to its record. */
static void calib_record_json(const struct mq_plan *p, int i, const struct mq_tensor_result *res, struct mq_buf *b)
{
	const struct mq_plan_tensor *pt = &p->tensors[i];
	const struct mq_tensor_result *r = res ? &res[i] : NULL;
	if (pt->calib != MQ_CALIB_STATIC) {
		mq_buf_adds(b, ",\"calibration\":\"missing: weights only\"");
		return;
	}
	mq_buf_addf(b, ",\"calibration\":\"static\",\"calib_rows\":%llu,\"output_sqnr_db_w\":",
		    (unsigned long long)pt->calib_rows);
	num(b, res, r ? mq_sqnr_db(r->out_signal, r->out_noise_w) : 0);
	if (pt->gptq) { /* GPTQ's figures, and round to nearest's output error beside its own */
		mq_buf_addf(b, ",\"method\":\"gptq\",\"gptq_fallback\":%s,\"damp\":",
			    r && r->gptq >= 2 ? "true" : "false");
		num(b, res, r ? r->gptq_damp : 0);
		mq_buf_adds(b, ",\"damp_raised\":");
		num(b, res, r ? r->gptq_raised : 0);
		mq_buf_adds(b, ",\"dead_inputs\":");
		num(b, res, r ? (double)r->gptq_dead : 0);
		mq_buf_adds(b, ",\"gptq_loss\":");
		num(b, res, r ? r->gptq_loss : 0);
		mq_buf_adds(b, ",\"output_sqnr_db_w_rtn\":");
		num(b, res, r ? mq_sqnr_db(r->out_signal, r->out_noise_rtn) : 0);
	}
	if (pt->act_rank < 0)
		return;
	mq_buf_adds(b, ",\"output_sqnr_db_wa\":");
	num(b, res, r ? mq_sqnr_db(r->out_signal, r->out_noise_wa) : 0);
	mq_buf_adds(b, ",\"act_threshold\":");
	num(b, res, r ? r->act_threshold : 0);
	mq_buf_adds(b, ",\"input_scale\":");
	num(b, res, r ? r->act_scale : 0);
	if (p->act_asymmetric) {
		mq_buf_adds(b, ",\"input_zero_point\":");
		num(b, res, r ? r->act_zero_point : 0);
	}
}

/* A number to 4 decimals, or null where it is not finite (the SQNR of an exact candidate). */
static void finite_json(struct mq_buf *b, double v)
{
	if (isfinite(v))
		mq_buf_addf(b, "%.4f", v);
	else
		mq_buf_adds(b, "null");
}

/* Mixed precision: what each candidate measured on tensor i, and the one chosen (known before the header is reserved). */
static void candidates_json(const struct mq_plan_choice *mix, int i, struct mq_buf *b)
{
	const int K = mix->n_candidates;
	int any = 0;
	for (int k = 0; k < K; k++) {
		uint64_t bytes = mix->bytes[(size_t)i * K + k];
		if (bytes == UINT64_MAX)
			continue;
		mq_buf_addf(b, "%s\"%s\":{\"bytes\":%llu,\"sqnr_db\":", any++ ? "," : ",\"candidates\":{", mix->name[k],
			    (unsigned long long)bytes);
		finite_json(b, mq_sqnr_db(mix->signal[i], mix->noise[(size_t)i * K + k]));
		mq_buf_adds(b, "}");
	}
	if (any)
		mq_buf_adds(b, "}");
	if (mix->chosen[i] >= 0)
		mq_buf_addf(b, ",\"chosen\":\"%s\"", mix->name[mix->chosen[i]]);
	if (mix->gate[i]) /* --min-sqnr took it past its smallest candidate, or kept it as it is */
		mq_buf_addf(b, ",\"promoted\":\"%s\"", mix->gate[i] == 2 ? "kept" : "wider");
}

/* Mixed precision's summary: the budget, what it chose and how close to the least error it came. */
static void mixed_json(const struct mq_manifest *m, const struct mq_plan *p, struct mq_buf *b)
{
	const struct mq_plan_choice *mix = p->mix;
	int count[MQ_MAX_CANDIDATES] = { 0 }, promoted = 0, kept = 0;
	uint64_t elems = 0, qbytes = 0;
	for (int i = 0; i < p->n_tensors; i++) {
		promoted += mix->gate[i] == 1;
		kept += mix->gate[i] == 2;
	}
	for (int i = 0; i < p->n_tensors; i++)
		if (mix->chosen[i] >= 0) {
			count[mix->chosen[i]]++;
			elems += m->tensors[i].nbytes / mq_dtype_size(m->tensors[i].dtype);
			qbytes += p->tensors[i].bytes_out;
		}
	mq_buf_addf(b, "{\"target_bytes\":%llu,\"bytes\":%llu,\"bits_per_weight\":", (unsigned long long)mix->target,
		    (unsigned long long)mix->chosen_bytes);
	finite_json(b, elems ? 8.0 * (double)qbytes / (double)elems : (double)NAN);
	mq_buf_addf(b, ",\"error\":%.9g,\"error_space\":\"%s\",\"lower_bound\":%.9g,\"items\":%d,\"solver\":\"%s\"",
		    mix->error, mix->output_space ? "output" : "weight", mix->lower_bound, mix->n_items,
		    "multiple-choice knapsack: convex-hull greedy and single changes, then a dynamic programme over the budget in coarse units where its table fits, the one with less error");
	if (mix->floor == mix->floor)
		mq_buf_addf(b, ",\"min_sqnr\":%.4f,\"promoted\":%d,\"kept_by_min_sqnr\":%d", mix->floor, promoted, kept);
	mq_buf_adds(b, ",\"chosen\":{");
	for (int k = 0; k < mix->n_candidates; k++)
		mq_buf_addf(b, "%s\"%s\":%d", k ? "," : "", mix->name[k], count[k]);
	mq_buf_adds(b, "}}");
}

/* The per-tensor records: {"name": {...}, ...} in name order. */
static void layers_json(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
			const struct mq_tensor_result *res, struct mq_buf *b)
{
	mq_buf_adds(b, "{");
	for (int i = 0; i < p->n_tensors; i++) {
		const struct mq_tensor *t = &m->tensors[i];
		const struct mq_plan_tensor *pt = &p->tensors[i];
		const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
		int q = pt->action == MQ_ACT_QUANT;
		if (i)
			mq_buf_adds(b, ",");
		mq_buf_add_json_str(b, t->name);
		mq_buf_addf(b, ":{\"action\":\"%s\",\"reason\":", q ? "quantized" : "kept");
		mq_buf_add_json_str(b, pt->reason);
		mq_buf_addf(b, ",\"dtype_in\":\"%s\",\"dtype_out\":\"%s\",\"shape\":", mq_dtype_name(t->dtype),
			    mq_dtype_name(q ? si->storage : t->dtype));
		shape_json(b, t->shape, t->ndim);
		mq_buf_addf(b, ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"sqnr_db\":", (unsigned long long)t->nbytes,
			    (unsigned long long)pt->bytes_out);
		if (q) {
			const struct mq_tensor_result *r = res ? &res[i] : NULL;
			uint64_t numel = t->nbytes / mq_dtype_size(t->dtype);
			num(b, res, r ? mq_sqnr_db(r->signal, r->noise) : 0);
			mq_buf_adds(b, ",\"mse\":");
			num(b, res, r ? r->noise / (double)numel : 0);
			mq_buf_adds(b, ",\"max_abs_err\":");
			num(b, res, r ? r->max_abs : 0);
		} else {
			mq_buf_adds(b, "null,\"mse\":null,\"max_abs_err\":null");
		}
		mq_buf_addf(b, ",\"%s\":", mq_digest_key(o->digest));
		digest_json(b, o, res ? res[i].sha256 : NULL);
		if (q && p->mix)
			mq_buf_addf(b, ",\"scheme\":\"%s\"", si->name);
		if (q && pt->q.granularity == MQ_GRAN_GROUP)
			mq_buf_addf(b, ",\"group_size\":%llu", (unsigned long long)pt->q.group_size);
		if (p->mix)
			candidates_json(p->mix, i, b);
		if (q && o->clip != MQ_CLIP_NONE)
			mq_buf_addf(b, ",\"clip\":\"%s\"", mq_clip_name(o->clip));
		if (o->calib && q)
			calib_record_json(p, i, res, b);
		mq_buf_adds(b, "}");
	}
	mq_buf_adds(b, "}");
}

static void provenance_json(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
			    const struct mq_tensor_result *res, struct mq_buf *b)
{
	mq_buf_adds(b, "{\"tool\":\"mq-dist\",\"version\":\"" MQ_VERSION "\",\"inputs\":[");
	if (m->index_name) {
		mq_buf_adds(b, "{\"file\":");
		mq_buf_add_json_str(b, m->index_name);
		mq_buf_addf(b, ",\"role\":\"index\",\"bytes\":%llu},", (unsigned long long)m->index_size);
	}
	for (int f = 0; f < m->n_files; f++) {
		mq_buf_adds(b, f ? ",{\"file\":" : "{\"file\":");
		mq_buf_add_json_str(b, m->files[f].name);
		mq_buf_addf(b, ",\"bytes\":%llu}", (unsigned long long)m->files[f].size);
	}
	mq_buf_addf(b, "],\"source_%s\":", mq_digest_key(o->digest));
	uint8_t d[MQ_DIGEST_MAX];
	if (res)
		mq_metadata_source_digest(p, res, o->digest, d);
	digest_json(b, o, res ? d : NULL);
	mq_buf_addf(b, ",\"chunk_bytes\":%u,\"options\":", MQ_CHUNK_BYTES);
	mq_options_json(o, b);
	mq_buf_adds(b, "}");
}

static void selected_json(const struct mq_manifest *m, const struct mq_plan *p, struct mq_buf *b)
{
	mq_buf_adds(b, "[");
	int k = 0;
	for (int i = 0; i < p->n_tensors; i++) {
		if (p->tensors[i].action != MQ_ACT_QUANT)
			continue;
		if (k++)
			mq_buf_adds(b, ",");
		mq_buf_add_json_str(b, m->tensors[i].name);
	}
	mq_buf_adds(b, "]");
}

/* Adds "key":"value" where value is the JSON text of inner, escaped as a string. */
static void kv_json(struct mq_buf *b, const char *key, struct mq_buf *inner)
{
	mq_buf_add_json_str(b, key);
	mq_buf_adds(b, ":");
	mq_buf_add_json_str(b, inner->data ? inner->data : "");
	mq_buf_release(inner);
}

static void kv(struct mq_buf *b, const char *key, const char *value)
{
	mq_buf_add_json_str(b, key);
	mq_buf_adds(b, ":");
	mq_buf_add_json_str(b, value);
}

/* Calibration keys of __metadata__: the file, its digest, the observer, the aggregates. */
static void calib_keys(const struct mq_plan *p, const struct mq_options *o, const struct mq_tensor_result *res,
		       const char *calib_digest, struct mq_buf *b)
{
	const char *base = strrchr(o->calib, '/');
	char v[64];
	kv(b, "calibration_file", base ? base + 1 : o->calib);
	mq_buf_addf(b, ",\"calibration_%s\":", mq_digest_key(o->digest));
	if (o->no_checksum) {
		mq_buf_adds(b, "\"none\"");
	} else if (calib_digest && res) {
		mq_buf_add_json_str(b, calib_digest);
	} else { /* the reservation form: as many zeros as the digest has hex digits */
		char zeros[2 * MQ_DIGEST_MAX + 1];
		memset(zeros, '0', 2 * mq_digest_len(o->digest));
		zeros[2 * mq_digest_len(o->digest)] = '\0';
		mq_buf_add_json_str(b, zeros);
	}
	mq_observer_name(&o->observer, v, sizeof(v));
	mq_buf_adds(b, ",");
	kv(b, "observer", v);
	mq_buf_adds(b, ",");
	enum mq_acts acts = o->act_none ? MQ_ACTS_NONE : mq_scheme_get(p->q.scheme)->acts;
	int kinds = 0; /* a mixed plan: the chosen schemes' activations (1 << enum mq_acts) */
	for (int i = 0; p->mix && !o->act_none && i < p->n_tensors; i++)
		kinds |= p->tensors[i].action == MQ_ACT_QUANT ? 1 << mq_scheme_get(p->tensors[i].q.scheme)->acts : 0;
	kinds &= ~(1 << MQ_ACTS_NONE);
	if (p->mix)
		acts = kinds & (1 << MQ_ACTS_INT8) ? MQ_ACTS_INT8 : kinds ? MQ_ACTS_FP8 : MQ_ACTS_NONE;
	kv(b, "activation_dtype", kinds & (kinds - 1) ? "mixed" : acts == MQ_ACTS_NONE ? "none"
					: acts == MQ_ACTS_FP8 ? "float8_e4m3fn" : "int8");
	if (acts != MQ_ACTS_NONE) { /* compressed-tensors' input_activations "symmetric" */
		mq_buf_adds(b, ",");
		kv(b, "activation_symmetric", o->act_asymmetric ? "false" : "true");
	}
	mq_buf_adds(b, ",\"output_sqnr_db_w\":\"");
	num(b, res, res ? mq_metadata_output_sqnr(p, res, 0) : 0);
	mq_buf_adds(b, "\",\"output_sqnr_db_wa\":\"");
	num(b, res, res && acts != MQ_ACTS_NONE ? mq_metadata_output_sqnr(p, res, 1) : (double)NAN);
	snprintf(v, sizeof(v), "%d", p->n_weights_only);
	mq_buf_adds(b, "\",");
	kv(b, "weights_only_layers", v);
	mq_buf_adds(b, ",");
}

void mq_metadata_fingerprint(const struct mq_plan *p, const struct mq_options *o, const struct mq_tensor_result *res,
			     const char *calib_digest, char hex[2 * MQ_SHA256_LEN + 1])
{
	if (o->no_checksum) {
		snprintf(hex, 2 * MQ_SHA256_LEN + 1, "none");
		return;
	}
	memset(hex, '0', 2 * MQ_SHA256_LEN);
	hex[2 * MQ_SHA256_LEN] = '\0';
	if (!res)
		return; /* the reservation form */
	uint8_t d[MQ_DIGEST_MAX];
	char src[2 * MQ_DIGEST_MAX + 1];
	const char *key = mq_digest_key(o->digest);
	mq_metadata_source_digest(p, res, o->digest, d);
	mq_hex(d, mq_digest_len(o->digest), src);
	MQ_ASSERT(o->out_format != NULL); /* set with the output path, before anything is fingerprinted */
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_addf(&b, "mq-dist fingerprint 1\nversion %s\nformat %s\nchunk_bytes %u\noptions ", MQ_VERSION,
		    o->out_format, MQ_CHUNK_BYTES);
	mq_options_json(o, &b);
	mq_buf_addf(&b, "\ncalibration_%s %s\nsource_%s %s\n", key,
		    o->calib ? (calib_digest ? calib_digest : "unknown") : "none", key, src);
	if (mq_buf_ok(&b) && mq_sha256(b.data, b.len, d) == 0)
		mq_hex(d, MQ_SHA256_LEN, hex);
	mq_buf_release(&b);
}

static void metadata_object(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
			    const struct mq_tensor_result *res, const char *calib_digest, struct mq_buf *b)
{
	const struct mq_scheme_traits *si = mq_scheme_get(p->q.scheme); /* the run's default spec */
	char v[64];
	struct mq_buf inner = MQ_BUF_INIT;
	mq_buf_adds(b, "{");
	kv(b, "format", "pt");
	mq_buf_adds(b, ",");
	if (p->mix) { /* each layer's record names its scheme */
		kv(b, "quantization_dtype", "mixed");
		mq_buf_adds(b, ",");
		kv(b, "scheme", "mixed");
		mq_buf_adds(b, ",");
		mixed_json(m, p, &inner);
		kv_json(b, "mixed_precision", &inner);
		mq_buf_adds(b, ",");
	} else {
		kv(b, "quantization_dtype", si->quant_dtype);
		mq_buf_adds(b, ",");
		kv(b, "scheme", si->name);
		mq_buf_adds(b, ",");
		kv(b, "symmetric", si->symmetric ? "true" : "false");
		mq_buf_adds(b, ",");
		kv(b, "per_channel", p->q.granularity == MQ_GRAN_CHANNEL ? "true" : "false");
		mq_buf_adds(b, ",");
	}
	if (!p->mix && p->q.granularity == MQ_GRAN_GROUP)
		mq_buf_addf(b, "\"group_size\":\"%llu\",", (unsigned long long)p->q.group_size);
	selected_json(m, p, &inner);
	kv_json(b, "selected_layers", &inner);
	mq_buf_adds(b, ",");
	uint64_t rows = 0;
	for (int i = 0; i < p->n_tensors; i++)
		rows = p->tensors[i].calib_rows > rows ? p->tensors[i].calib_rows : rows;
	snprintf(v, sizeof(v), "%llu", (unsigned long long)rows);
	kv(b, "calibration_samples", v);
	mq_buf_adds(b, ",");
	kv(b, "mq_dist_version", MQ_VERSION);
	mq_buf_adds(b, ",");
	snprintf(v, sizeof(v), "%llu", (unsigned long long)p->bytes_in);
	kv(b, "original_size_bytes", v);
	mq_buf_adds(b, ",");
	snprintf(v, sizeof(v), "%llu", (unsigned long long)p->bytes_out);
	kv(b, "quantized_size_bytes", v);
	mq_buf_adds(b, ",");
	snprintf(v, sizeof(v), "%.3f", (double)p->bytes_in / 1048576.0);
	kv(b, "original_size_mb", v);
	mq_buf_adds(b, ",");
	snprintf(v, sizeof(v), "%.3f", (double)p->bytes_out / 1048576.0);
	kv(b, "quantized_size_mb", v);
	mq_buf_adds(b, ",");
	snprintf(v, sizeof(v), "%.4f", p->bytes_out ? (double)p->bytes_in / (double)p->bytes_out : 1.0);
	kv(b, "compression_ratio", v);
	mq_buf_adds(b, ",\"sqnr_db\":\"");
	num(b, res, res ? mq_metadata_aggregate_sqnr(p, res) : 0);
	mq_buf_adds(b, "\",");
	char fp[2 * MQ_SHA256_LEN + 1];
	mq_metadata_fingerprint(p, o, res, calib_digest, fp);
	kv(b, "fingerprint", fp);
	mq_buf_adds(b, ",");
	if (o->calib)
		calib_keys(p, o, res, calib_digest, b);
	layers_json(m, p, o, res, &inner);
	kv_json(b, "layers", &inner);
	mq_buf_adds(b, ",");
	provenance_json(m, p, o, res, &inner);
	kv_json(b, "provenance", &inner);
	mq_buf_adds(b, "}");
}

static int pad(struct mq_buf *b, uint64_t pad_to, struct mq_error *err);

int mq_metadata_header(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
		       const struct mq_tensor_result *res, const char *calib_digest, uint64_t pad_to,
		       struct mq_buf *b, struct mq_error *err)
{
	mq_buf_adds(b, "{\"__metadata__\":");
	metadata_object(m, p, o, res, calib_digest, b);
	for (int k = 0; k < p->n_out; k++) {
		mq_buf_adds(b, ",");
		mq_st_entry_json(b, &p->out[k], p->out[k].begin, p->out[k].end);
	}
	mq_buf_adds(b, "}");
	return pad(b, pad_to, err);
}

int mq_metadata_object(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
		       const struct mq_tensor_result *res, const char *calib_digest, uint64_t pad_to,
		       struct mq_buf *b, struct mq_error *err)
{
	metadata_object(m, p, o, res, calib_digest, b);
	return pad(b, pad_to, err);
}

static int pad(struct mq_buf *b, uint64_t pad_to, struct mq_error *err)
{
	if (!mq_buf_ok(b))
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory building the header");
	if (pad_to) {
		if (b->len > pad_to)
			return mq_fail(err, MQ_ERR_INTERNAL, "header of %zu bytes exceeds its reservation of %llu",
				       b->len, (unsigned long long)pad_to);
		while (b->len < pad_to)
			mq_buf_add(b, " ", 1);
		if (!mq_buf_ok(b))
			return mq_fail(err, MQ_ERR_INTERNAL, "out of memory building the header");
	}
	return 0;
}

int mq_metadata_reserve(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
			int object_only, uint64_t *len, struct mq_error *err)
{
	struct mq_buf b = MQ_BUF_INIT;
	int rc = object_only ? mq_metadata_object(m, p, o, NULL, NULL, 0, &b, err)
			     : mq_metadata_header(m, p, o, NULL, NULL, 0, &b, err);
	*len = (b.len + 7) & ~(uint64_t)7;
	mq_buf_release(&b);
	if (!rc && *len > MQ_ST_MAX_HEADER)
		return mq_fail(err, MQ_ERR_INPUT, "the output header would exceed the 100000000-byte safetensors limit");
	return rc;
}
