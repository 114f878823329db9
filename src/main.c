/* mq-dist: start MPI, run the command on the world communicator, exit with the agreed status. */
#include <mpi.h>

#include "comm.h"
#include "run.h"

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	MPI_Comm world = MPI_COMM_WORLD;
	struct mq_comm *c = mq_comm_new(&world);
	int code = 6;
	if (c)
		code = mq_run(c, argc, argv);
	mq_comm_free(c);
	MPI_Finalize();
	return code;
}
