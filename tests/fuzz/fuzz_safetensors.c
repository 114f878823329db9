/* The safetensors reader: the input is a whole .safetensors file (length prefix, header, data). */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
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
	int fd = mq_fuzz_memfile(data, size, NULL);
	char *json = NULL;
	uint64_t n = 0;
	struct mq_error err = { 0 };
	if (mq_st_read_raw("f.safetensors", fd, size, &json, &n, &err) == 0) {
		struct mq_st_header h;
		if (mq_st_parse("f.safetensors", json, n, size, &h, &err) == 0) {
			if (h.data_start + (h.n_tensors ? h.tensors[h.n_tensors - 1].end : 0) != size)
				mq_fuzz_abort("a parsed header does not cover the file exactly");
			(void)mq_st_meta_get(&h, "format");
			mq_st_header_release(&h);
		} else if (!err.code || !strstr(err.msg, "f.safetensors")) {
			mq_fuzz_abort("a failure without a message naming the file");
		}
		free(json);
	}
	return 0;
}
