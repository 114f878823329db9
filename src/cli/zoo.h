/*
 * zoo: the report of a job over many models, written by rank 0 once they are
 * done: PREFIX.json for scripts and PREFIX.md for people.
 */
#ifndef MQ_ZOO_H
#define MQ_ZOO_H

#include "status.h"

/* One model of a job, for the zoo report. */
struct mq_zoo_entry {
	const char *name, *input, *output;
	int code;          /* enum mq_status of its run */
	int skipped;       /* up to date */
	double seconds;
	const char *message; /* the error, "" if none */
};

/*
 * Rank 0 of a job: PREFIX.json and PREFIX.md, one row per model (status,
 * scheme, sizes, compression, aggregate SQNR, worst layer, time). The figures
 * come from each output's own metadata, so skipped models have them too.
 */
int mq_report_zoo(const char *prefix, const char *job_file, const struct mq_zoo_entry *z, int n,
		  struct mq_error *err);

#endif
