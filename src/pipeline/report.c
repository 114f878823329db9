#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "buf.h"
#include "source.h"
#include "status.h"
#include "unit.h"

static const char *const stat_names[MQ_STAT_COUNT] = {
	[MQ_STAT_T_TOTAL] = "total_s",
	[MQ_STAT_T_MANIFEST] = "manifest_s",
	[MQ_STAT_T_PLAN] = "plan_s",
	[MQ_STAT_T_WORK] = "work_s",
	[MQ_STAT_T_CHOOSE] = "choose_s",
	[MQ_STAT_T_READ] = "read_s",
	[MQ_STAT_T_HASH] = "hash_s",
	[MQ_STAT_T_QUANT] = "quantize_s",
	[MQ_STAT_T_WRITE] = "write_s",
	[MQ_STAT_T_WAIT] = "wait_s",
	[MQ_STAT_T_CALIB] = "calibrate_s",
	[MQ_STAT_T_CALIB_READ] = "calib_read_s",
	[MQ_STAT_T_FINISH] = "finish_s",
	[MQ_STAT_T_SYNC] = "sync_s",
	[MQ_STAT_BYTES_READ] = "bytes_read",
	[MQ_STAT_READ_AHEAD] = "read_ahead_bytes",
	[MQ_STAT_BYTES_WRITTEN] = "bytes_written",
	[MQ_STAT_WRITES] = "write_calls",
	[MQ_STAT_CALIB_BYTES] = "calib_bytes_read",
	[MQ_STAT_PEAK_RSS] = "peak_rss_bytes",
	[MQ_STAT_UNITS] = "units",
};

double mq_report_peak_rss(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_maxrss * 1024.0;
}

static void shape_str(char *s, size_t n, const uint64_t *shape, int ndim)
{
	size_t k = (size_t)snprintf(s, n, "[");
	for (int d = 0; d < ndim && k < n; d++)
		k += (size_t)snprintf(s + k, n - k, d ? ", %llu" : "%llu", (unsigned long long)shape[d]);
	if (k < n)
		snprintf(s + k, n - k, "]");
}

char *mq_report_size(uint64_t bytes, char *buf, size_t cap)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	if (bytes < 1024) {
		snprintf(buf, cap, "%llu bytes", (unsigned long long)bytes);
		return buf;
	}
	double v = (double)bytes;
	int u = -1;
	while (v >= 1024.0 && u < 5) {
		v /= 1024.0;
		u++;
	}
	snprintf(buf, cap, "%.1f %s", v, units[u]);
	return buf;
}

/* The run's default spec: " per channel", " per tensor", or nothing for a scheme without parameters (a cast). */
static const char *granularity_text(const struct mq_plan *p)
{
	static const char *const text[] = { [MQ_GRAN_NONE] = "", [MQ_GRAN_TENSOR] = " per tensor",
					    [MQ_GRAN_CHANNEL] = " per channel", [MQ_GRAN_GROUP] = " per group" };
	return text[p->q.granularity];
}

static double mib(uint64_t b)
{
	return (double)b / 1048576.0;
}

void mq_report_progress(const struct mq_manifest *m, const struct mq_plan *p, int i, int done,
			const struct mq_tensor_result *r)
{
	const struct mq_tensor *t = &m->tensors[i];
	const struct mq_plan_tensor *pt = &p->tensors[i];
	char shape[128];
	shape_str(shape, sizeof(shape), t->shape, t->ndim);
	int w = snprintf(NULL, 0, "%d", p->n_tensors);
	if (pt->action == MQ_ACT_QUANT) {
		double s = mq_sqnr_db(r->signal, r->noise);
		char sq[32];
		if (isfinite(s))
			snprintf(sq, sizeof(sq), "%7.2f dB", s);
		else
			snprintf(sq, sizeof(sq), "  exact   ");
		char cal[256] = "";
		if (pt->calib == MQ_CALIB_STATIC && pt->act_rank >= 0)
			snprintf(cal, sizeof(cal), "  output %.2f dB (%s %.2f dB)", mq_sqnr_db(r->out_signal, r->out_noise_w),
				 mq_scheme_get(pt->q.scheme)->acts == MQ_ACTS_FP8 ? "FP8 W8A8" : "W8A8",
				 mq_sqnr_db(r->out_signal, r->out_noise_wa));
		else if (pt->calib == MQ_CALIB_STATIC && pt->gptq && r->gptq >= 2)
			snprintf(cal, sizeof(cal), "  output %.2f dB  gptq failed: rounded to nearest (%s)",
				 mq_sqnr_db(r->out_signal, r->out_noise_w),
				 r->gptq == 3 ? "its Hessian overflows float32: calibration inputs near 1e19"
					      : "no Cholesky below damp 1");
		else if (pt->calib == MQ_CALIB_STATIC && pt->gptq) {
			char dead[96] = "";
			if (r->gptq_dead) /* GPTQ zeroes them, as the reference does: say so */
				snprintf(dead, sizeof(dead), "  WARNING: %llu of %llu inputs always zero, their weights zeroed",
					 (unsigned long long)r->gptq_dead, (unsigned long long)pt->row_elems);
			snprintf(cal, sizeof(cal), "  output %.2f dB (rtn %.2f dB)  gptq loss %.4g damp %.2f%s%s  %.2f s",
				 mq_sqnr_db(r->out_signal, r->out_noise_w), mq_sqnr_db(r->out_signal, r->out_noise_rtn),
				 r->gptq_loss, r->gptq_damp, r->gptq_raised ? " (raised)" : "", dead, r->gptq_seconds);
		}
		else if (pt->calib == MQ_CALIB_STATIC)
			snprintf(cal, sizeof(cal), "  output %.2f dB", mq_sqnr_db(r->out_signal, r->out_noise_w));
		else if (pt->calib == MQ_CALIB_MISSING)
			snprintf(cal, sizeof(cal), "  no calibration: weights only");
		const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
		char to[48]; /* a packed scheme by name: its storage (I32 words) says little */
		if (si->pack > 1 && pt->q.granularity == MQ_GRAN_GROUP)
			snprintf(to, sizeof(to), "%s g%llu", si->name, (unsigned long long)pt->q.group_size);
		else
			snprintf(to, sizeof(to), "%s", si->pack > 1 ? si->name : mq_dtype_name(si->storage));
		mq_info("[%*d/%d] %s %s %s -> %s  sqnr %s%s  %.2f -> %.2f MiB\n", w, done, p->n_tensors, t->name, shape,
			mq_dtype_name(t->dtype), to, sq, cal, mib(t->nbytes), mib(pt->bytes_out));
	} else {
		mq_info("[%*d/%d] %s %s %s  kept (%s)  %.2f MiB\n", w, done, p->n_tensors, t->name, shape,
			mq_dtype_name(t->dtype), pt->reason, mib(t->nbytes));
	}
}

/* The plan's schemes: "int8 per channel", or "mixed: int4-g128 11, int8 17" (the layers each candidate got). */
static void scheme_text(const struct mq_plan *p, char *what, size_t cap)
{
	if (!p->mix) {
		snprintf(what, cap, "%s%s", mq_scheme_get(p->q.scheme)->name, granularity_text(p));
		return;
	}
	int count[MQ_MAX_CANDIDATES] = { 0 }, k = snprintf(what, cap, "mixed:");
	for (int i = 0; i < p->n_tensors; i++)
		if (p->mix->chosen[i] >= 0)
			count[p->mix->chosen[i]]++;
	for (int c = 0, any = 0; c < p->mix->n_candidates && k > 0 && (size_t)k < cap; c++)
		if (count[c])
			k += snprintf(what + k, cap - (size_t)k, "%s %s %d", any++ ? "," : "", p->mix->name[c], count[c]);
}

/* Mixed precision with --min-sqnr: the weights it promoted and those it kept, named (the first few). */
static void floor_lines(const struct mq_manifest *m, const struct mq_plan *p)
{
	if (!p->mix || p->mix->floor != p->mix->floor)
		return;
	for (int g = 1; g <= 2; g++) {
		struct mq_buf b = MQ_BUF_INIT;
		int n = 0;
		for (int i = 0; i < p->n_tensors; i++)
			if (p->mix->gate[i] == g && n++ < 6)
				mq_buf_addf(&b, "%s%s", n > 1 ? ", " : "", m->tensors[i].name);
		if (n > 6)
			mq_buf_addf(&b, " and %d more", n - 6);
		if (n)
			mq_info("  --min-sqnr %.2f dB: %d weight%s %s: %s\n", p->mix->floor, n, n == 1 ? "" : "s",
				g == 1 ? "promoted past the smallest candidate" : "kept as they are (no candidate reaches it)",
				b.data ? b.data : "");
		mq_buf_release(&b);
	}
}

void mq_report_plan(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
		    uint64_t out_size, const char *output)
{
	uint64_t header_len = out_size - p->bytes_out; /* headers, metadata, and for .pt the archive's records */
	mq_print(stdout, "plan for %s -> %s (dry run: nothing written)\n", o->input, output);
	char what[256];
	scheme_text(p, what, sizeof(what));
	mq_print(stdout, "  scheme %s, %d tensors: %d quantized, %d kept; %d work units over %d ranks\n", what,
	       p->n_tensors, p->n_quantized,
	       p->n_tensors - p->n_quantized, p->n_units, p->n_ranks);
	mq_print(stdout, "  tensor data %.3f MiB -> %.3f MiB, compression %.3fx; output file %llu bytes (headers and metadata %llu)\n",
	       mib(p->bytes_in), mib(p->bytes_out), p->bytes_out ? (double)p->bytes_in / (double)p->bytes_out : 1.0,
	       (unsigned long long)out_size, (unsigned long long)header_len);
	/* buffers, the largest header copy (rank 0), record tables (rank 0), and the manifest */
	uint64_t manifest = 0;
	for (int f = 0; f < m->n_files; f++)
		manifest += m->files[f].raw_len;
	uint64_t chunks = 0;
	for (int t = 0; t < p->n_tensors; t++)
		chunks += p->tensors[t].n_chunks;
	uint64_t rank0_extra = 2 * header_len + chunks * 32 + (uint64_t)p->n_units * 24;
	uint64_t window = 0; /* the input's mapped window (source.h): resident while it is read */
	for (int f = 0; f < m->n_files; f++)
		window = m->files[f].size > window ? m->files[f].size : window;
	window = window < SOURCE_WINDOW ? window : SOURCE_WINDOW;
	const uint64_t staging = (uint64_t)UNIT_OUTPUTS * UNIT_STAGE; /* unit.h: the writes gathered */
	mq_print(stdout, "  %-6s %8s %12s %12s %14s\n", "rank", "units", "read MiB", "write MiB", "peak est. MiB");
	uint64_t max_cost = 0, sum_cost = 0;
	for (int r = 0; r < p->n_ranks; r++) {
		const struct mq_rank_load *l = &p->ranks[r];
		uint64_t est = p->arena_bytes + window + staging + l->gptq_bytes + 2 * manifest + (r == 0 ? rank0_extra : 0);
		char gptq[48] = "";
		if (p->n_gptq)
			snprintf(gptq, sizeof(gptq), "  (GPTQ state %.1f MiB)", mib(l->gptq_bytes));
		mq_print(stdout, "  %-6d %8d %12.3f %12.3f %14.1f%s\n", r, l->n_units, mib(l->bytes_in), mib(l->bytes_out),
		       mib(est) + 40.0, gptq);
		max_cost = l->cost > max_cost ? l->cost : max_cost;
		sum_cost += l->cost;
	}
	mq_print(stdout,
		 "  (peak estimate = tensor buffers %.1f MiB + input window %.1f MiB + write staging %.1f MiB + headers + about 40 MiB of MPI and libraries)\n",
		 mib(p->arena_bytes), mib(window), mib(staging));
	if (sum_cost)
		mq_print(stdout, "  load imbalance (max/mean work): %.3f\n",
		       (double)max_cost * p->n_ranks / (double)sum_cost);
	for (int i = 0; i < p->n_tensors; i++) {
		const struct mq_tensor *t = &m->tensors[i];
		const struct mq_plan_tensor *pt = &p->tensors[i];
		char cal[96] = "";
		if (pt->calib == MQ_CALIB_STATIC && pt->act_rank >= 0)
			snprintf(cal, sizeof(cal), "; calibrated, %llu rows, observer on rank %d",
				 (unsigned long long)pt->calib_rows, pt->act_rank);
		else if (pt->calib == MQ_CALIB_STATIC && pt->gptq)
			snprintf(cal, sizeof(cal), "; gptq on rank %d, %llu calibration rows, %.1f MiB", pt->gptq_rank,
				 (unsigned long long)pt->calib_rows, mib(pt->gptq_bytes));
		else if (pt->calib == MQ_CALIB_STATIC)
			snprintf(cal, sizeof(cal), "; calibrated, %llu rows", (unsigned long long)pt->calib_rows);
		else if (pt->calib == MQ_CALIB_MISSING)
			snprintf(cal, sizeof(cal), "; no calibration: weights only");
		mq_print(stdout, "  %-9s %-60s %s%s\n", pt->action == MQ_ACT_QUANT ? "quantize" : "keep", t->name, pt->reason, cal);
	}
}

struct worst {
	double sqnr;
	int tensor;
};

static int cmp_worst(const void *a, const void *b)
{
	const struct worst *x = a, *y = b;
	if (x->sqnr != y->sqnr)
		return x->sqnr < y->sqnr ? -1 : 1;
	return x->tensor - y->tensor;
}

static double max_over(const double *stats, int n, int k, double *sum)
{
	double mx = 0;
	*sum = 0;
	for (int r = 0; r < n; r++) {
		double v = stats[r * MQ_STAT_COUNT + k];
		mx = v > mx ? v : mx;
		*sum += v;
	}
	return mx;
}

void mq_report_summary(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_tensor_result *res,
		       const double *stats, const char *output)
{
	double total = stats[MQ_STAT_T_TOTAL], sum;
	double rss = max_over(stats, p->n_ranks, MQ_STAT_PEAK_RSS, &sum);
	mq_info("\n");
	mq_info("wrote %s\n", output);
	char what[256];
	scheme_text(p, what, sizeof(what));
	mq_info("  %d tensors: %d quantized (%s), %d kept, on %d rank%s\n", p->n_tensors, p->n_quantized, what,
		p->n_tensors - p->n_quantized, p->n_ranks, p->n_ranks == 1 ? "" : "s");
	floor_lines(m, p);
	mq_info("  size %.3f MiB -> %.3f MiB, compression %.3fx\n", mib(p->bytes_in), mib(p->bytes_out),
		p->bytes_out ? (double)p->bytes_in / (double)p->bytes_out : 1.0);
	double agg = mq_metadata_aggregate_sqnr(p, res);
	if (p->n_quantized)
		mq_info("  aggregate SQNR %.2f dB\n", agg);
	int with_act = 0;
	for (int i = 0; i < p->n_tensors; i++)
		with_act |= p->tensors[i].calib == MQ_CALIB_STATIC && p->tensors[i].act_rank >= 0;
	if (p->n_calibrated && with_act)
		mq_info("  output-space SQNR on %d calibrated layers: %.2f dB with weights quantized, %.2f dB with activations too\n",
			p->n_calibrated, mq_metadata_output_sqnr(p, res, 0), mq_metadata_output_sqnr(p, res, 1));
	else if (p->n_calibrated)
		mq_info("  output-space SQNR on %d calibrated layers: %.2f dB with weights quantized\n", p->n_calibrated,
			mq_metadata_output_sqnr(p, res, 0));
	if (p->n_weights_only) {
		mq_info("  %d layer%s without calibration, quantized weights only:", p->n_weights_only,
			p->n_weights_only == 1 ? "" : "s");
		for (int i = 0, k = 0; i < p->n_tensors && k < 10; i++)
			if (p->tensors[i].calib == MQ_CALIB_MISSING)
				mq_info("%s %s", k++ ? "," : "", m->tensors[i].name);
		mq_info("%s\n", p->n_weights_only > 10 ? ", ..." : "");
	}
	struct worst *w = malloc(((size_t)p->n_quantized + 1) * sizeof(*w));
	int n = 0;
	for (int i = 0; w && i < p->n_tensors; i++)
		if (p->tensors[i].action == MQ_ACT_QUANT)
			w[n++] = (struct worst){ mq_sqnr_db(res[i].signal, res[i].noise), i };
	if (w && n) {
		qsort(w, (size_t)n, sizeof(*w), cmp_worst);
		mq_info("  worst layers:\n");
		for (int k = 0; k < n && k < 5; k++)
			mq_info("    %8.2f dB  %s\n", w[k].sqnr, m->tensors[w[k].tensor].name);
	}
	free(w);
	mq_info("  time %.3f s, %.3f GB/s of input; peak RSS %.1f MiB (largest rank)\n", total,
		total > 0 ? (double)p->bytes_in / total / 1e9 : 0.0, rss / 1048576.0);
}

int mq_report_write(const char *path, const struct mq_manifest *m, const struct mq_plan *p,
		    const struct mq_options *o, const struct mq_tensor_result *res, const double *stats,
		    const char *output, struct mq_error *err)
{
	(void)m;
	(void)res;
	struct mq_buf b = MQ_BUF_INIT;
	double total = stats[MQ_STAT_T_TOTAL], sum;
	double work_max = max_over(stats, p->n_ranks, MQ_STAT_T_WORK, &sum);
	double work_mean = sum / p->n_ranks;
	mq_buf_adds(&b, "{\n  \"tool\": \"mq-dist\",\n  \"version\": \"" MQ_VERSION "\",\n  \"input\": ");
	mq_buf_add_json_str(&b, o->input);
	mq_buf_adds(&b, ",\n  \"output\": ");
	mq_buf_add_json_str(&b, output);
	mq_buf_addf(&b, ",\n  \"ranks\": %d,\n  \"tensors\": %d,\n  \"quantized\": %d,\n  \"units\": %d,\n",
		    p->n_ranks, p->n_tensors, p->n_quantized, p->n_units);
	mq_buf_addf(&b, "  \"bytes_in\": %llu,\n  \"bytes_out\": %llu,\n  \"total_s\": %.6f,\n",
		    (unsigned long long)p->bytes_in, (unsigned long long)p->bytes_out, total);
	double sync = max_over(stats, p->n_ranks, MQ_STAT_T_SYNC, &sum);
	mq_buf_addf(&b, "  \"input_gb_per_s\": %.6f,\n  \"sync_s\": %.6f,\n  \"input_gb_per_s_without_sync\": %.6f,\n",
		    total > 0 ? (double)p->bytes_in / total / 1e9 : 0.0, sync,
		    total - sync > 0 ? (double)p->bytes_in / (total - sync) / 1e9 : 0.0);
	mq_buf_addf(&b, "  \"load_imbalance\": %.6f,\n", work_mean > 0 ? work_max / work_mean : 1.0);
	double rss = max_over(stats, p->n_ranks, MQ_STAT_PEAK_RSS, &sum);
	mq_buf_addf(&b, "  \"peak_rss_bytes_max\": %.0f,\n  \"per_rank\": [\n", rss);
	for (int r = 0; r < p->n_ranks; r++) {
		const double *s = stats + r * MQ_STAT_COUNT;
		mq_buf_addf(&b, "    {\"rank\": %d", r);
		for (int k = 0; k < MQ_STAT_COUNT; k++) {
			if (k >= MQ_STAT_BYTES_READ)
				mq_buf_addf(&b, ", \"%s\": %.0f", stat_names[k], s[k]);
			else
				mq_buf_addf(&b, ", \"%s\": %.6f", stat_names[k], s[k]);
		}
		double t = s[MQ_STAT_T_WORK];
		mq_buf_addf(&b, ", \"read_gb_per_s\": %.6f}%s\n", t > 0 ? s[MQ_STAT_BYTES_READ] / t / 1e9 : 0.0,
			    r + 1 < p->n_ranks ? "," : "");
	}
	mq_buf_adds(&b, "  ]\n}\n");
	if (!mq_buf_ok(&b)) {
		mq_buf_release(&b);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory writing the report");
	}
	size_t n = strlen(path) + 16;
	char *tmp = malloc(n);
	FILE *fp = NULL;
	int rc = 0;
	if (tmp) {
		snprintf(tmp, n, "%s.tmp", path);
		fp = fopen(tmp, "wb");
	}
	if (!fp || fwrite(b.data, 1, b.len, fp) != b.len) {
		rc = mq_fail(err, MQ_ERR_OUTPUT, "cannot write the report '%s'", path);
	}
	if (fp && fclose(fp) != 0 && !rc)
		rc = mq_fail(err, MQ_ERR_OUTPUT, "cannot write the report '%s'", path);
	if (!rc && rename(tmp, path) != 0)
		rc = mq_fail(err, MQ_ERR_OUTPUT, "cannot rename the report to '%s'", path);
	if (rc && tmp)
		remove(tmp);
	free(tmp);
	mq_buf_release(&b);
	return rc;
}
