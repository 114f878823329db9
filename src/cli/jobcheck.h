/*
 * jobcheck: what must hold across a job's models, checked once they are all
 * read (job.c): names are unique, outputs are unique once paths are
 * normalised as the file system takes them, and no model reads a file
 * another writes (nor writes its own input).
 */
#ifndef MQ_JOBCHECK_H
#define MQ_JOBCHECK_H

#include "job.h"

/* MQ_ERR_USAGE naming the two models (path: the job file, for the message). */
int mq_job_check_names(const char *path, struct mq_job *job, struct mq_error *err);
int mq_job_check_paths(const char *path, struct mq_job *job, struct mq_error *err);

#endif
