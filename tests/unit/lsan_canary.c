/*
 * A deliberate leak of the project's own code, built with MQ_SANITIZE only. The suite runs
 * LeakSanitizer with suppressions for Open MPI and with hwloc's OpenCL plugin kept out (see
 * scripts/test.sh); this program checks that those settings still report a leak of ours: it
 * starts MPI (so everything MPI loads is there, as in mq-dist), builds a string with mq_buf,
 * drops it, and ctest requires LeakSanitizer to report it.
 */
#include <mpi.h>
#include <stdio.h>

#include "buf.h"

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	struct mq_buf *b = &(struct mq_buf)MQ_BUF_INIT;
	mq_buf_addf(b, "%4000s", "never freed");
	printf("canary: %zu bytes built, none freed\n", b->len);
	b = NULL;
	MPI_Finalize();
	return 0;
}
