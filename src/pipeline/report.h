/*
 * report: what rank 0 tells people. The progress line per tensor, the plan of
 * a dry run, the closing summary, and the run report (JSON). Run-dependent
 * figures (times, ranks, memory) live here and never in the model file.
 */
#ifndef MQ_REPORT_H
#define MQ_REPORT_H

#include <stdint.h>

#include "manifest.h"
#include "metadata.h"
#include "config.h"
#include "plan.h"

/* Per-rank figures, gathered to rank 0 as doubles (keep in sync with names in report.c). */
enum mq_stat {
	MQ_STAT_T_TOTAL,
	MQ_STAT_T_MANIFEST,
	MQ_STAT_T_PLAN,
	MQ_STAT_T_CHOOSE, /* mixed precision's pass over the weights (its reads are also in read_s) */
	MQ_STAT_T_WORK,
	MQ_STAT_T_READ,
	MQ_STAT_T_HASH,
	MQ_STAT_T_QUANT,
	MQ_STAT_T_WRITE,
	MQ_STAT_T_WAIT,
	MQ_STAT_T_CALIB,
	MQ_STAT_T_CALIB_READ,
	MQ_STAT_T_FINISH,
	MQ_STAT_T_SYNC, /* of finish: the output's fsyncs (on a virtual disk they time the disk) */
	MQ_STAT_BYTES_READ,
	MQ_STAT_READ_AHEAD, /* input bytes asked for ahead (POSIX_FADV_WILLNEED): 0 when the page cache held them */
	MQ_STAT_BYTES_WRITTEN,
	MQ_STAT_WRITES, /* write requests to the output (their mean size: bytes_written / write_calls) */
	MQ_STAT_CALIB_BYTES,
	MQ_STAT_PEAK_RSS,
	MQ_STAT_UNITS,
	MQ_STAT_COUNT
};

/* Peak resident set size of this process, in bytes. */
double mq_report_peak_rss(void);

void mq_report_progress(const struct mq_manifest *m, const struct mq_plan *p, int i, int done,
			const struct mq_tensor_result *r);
void mq_report_plan(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
		    uint64_t out_size, const char *output);
void mq_report_summary(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_tensor_result *res,
		       const double *stats, const char *output);
/* Writes the run report (to a temporary name, then renamed). */
int mq_report_write(const char *path, const struct mq_manifest *m, const struct mq_plan *p,
		    const struct mq_options *o, const struct mq_tensor_result *res, const double *stats,
		    const char *output, struct mq_error *err);

/* A byte count for people, into buf: "546 bytes", "12.3 GiB" (units of 1024). Returns buf. */
char *mq_report_size(uint64_t bytes, char *buf, size_t cap);

#endif
