/* mq-dist: start MPI, run the command on the world communicator, exit with the agreed status. */
#include "command.h"
#include "comm.h"
#include "status.h"

int main(int argc, char **argv)
{
	struct mq_comm *world = mq_comm_init(&argc, &argv);
	int code = world ? mq_command_main(world, argc, argv) : mq_status_exit_code(MQ_ERR_INTERNAL);
	mq_comm_finalize(world);
	return code;
}
