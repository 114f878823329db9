/*
 * A deliberate leak of the project's own code, built with MQ_SANITIZE only. The suite runs
 * LeakSanitizer with suppressions for Open MPI and with hwloc's OpenCL plugin kept out (see
 * scripts/test.sh); this program checks that those settings still report a leak of ours: it
 * starts MPI (so everything MPI loads is there, as in mq-dist), builds a string with mq_buf,
 * drops it, and ctest requires LeakSanitizer to report it.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"

static struct mq_buf *volatile held;

/* Builds the string in a heap-allocated mq_buf, then drops every pointer to both. */
__attribute__((noinline)) static void leak(void)
{
	held = calloc(1, sizeof(struct mq_buf));
	if (!held)
		return;
	mq_buf_addf(held, "%4000s", "never freed");
	printf("canary: %zu bytes built, none freed\n", held->len);
	held = NULL;
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	leak();
	MPI_Finalize();
	return 0;
}
