/* The torch.save reader: the input is a whole .pt file (ZIP records, data.pkl, storages). */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "torch.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mq_log_init(0, 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (mq_torch_sniff(data, size) != MQ_TORCH_ZIP)
		return 0; /* the manifest sends other files to the safetensors reader */
	int fd = mq_fuzz_memfile(data, size, NULL);
	char *raw = NULL;
	uint64_t raw_len = 0;
	struct mq_error err = { 0 };
	if (mq_torch_read_raw("f.pt", fd, size, &raw, &raw_len, &err) != 0)
		return 0;
	struct mq_torch_header h;
	if (mq_torch_parse("f.pt", raw, raw_len, size, &h, &err) == 0) {
		for (int i = 0; i < h.n_tensors; i++) {
			const struct mq_torch_tensor *t = &h.tensors[i];
			if (t->contiguous && (t->offset > size || t->nbytes > size - t->offset))
				mq_fuzz_abort("a contiguous tensor outside the file was accepted");
		}
		mq_torch_header_release(&h);
	} else if (!err.code) {
		mq_fuzz_abort("a failure without a message");
	}
	free(raw);
	return 0;
}
