/* The job-file parser: the input is the text of a job file, as every rank receives it (not NUL-terminated). */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "status.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mq_log_init(0, 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1); /* exactly size bytes: a read past them is seen */
	if (!text)
		return 0;
	memcpy(text, data, size);
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", "-q", NULL };
	struct mq_job job;
	struct mq_error err = { 0 };
	if (mq_job_parse("jobs/zoo.json", text, size, 4, argv, &job, &err) == 0) {
		for (int i = 0; i < job.n_models; i++)
			if (job.models[i].argc < 2 || job.models[i].argv[job.models[i].argc] != NULL ||
			    !job.models[i].output)
				mq_fuzz_abort("a model without a command line or an output");
		mq_job_release(&job);
	} else if (!err.code || !strstr(err.msg, "jobs/zoo.json")) {
		mq_fuzz_abort("a failure without a message naming the file");
	}
	free(text);
	return 0;
}
