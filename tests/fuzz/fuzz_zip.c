/* The ZIP directory reader: the input is a whole archive. */
#include "fuzz.h"

#include <string.h>

#include "status.h"
#include "zip.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mq_log_init(0, 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = mq_fuzz_memfile(data, size, NULL);
	struct mq_zip_entry *e = NULL;
	int n = 0;
	struct mq_error err = { 0 };
	if (mq_zip_read("f.pt", fd, size, &e, &n, &err) == 0) {
		for (int i = 0; i < n; i++)
			if (e[i].data_offset > size || e[i].size > size - e[i].data_offset)
				mq_fuzz_abort("a record outside the file was accepted");
		mq_zip_entries_free(e, n);
	} else if (e || !err.code) {
		mq_fuzz_abort("a failure that returns entries or no message");
	}
	return 0;
}
