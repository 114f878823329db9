/*
 * The command-line parser: the input is split at NUL bytes into the
 * arguments after argv[0] ("mq-dist"), so "--include\0a+\0m.safetensors" is
 * three arguments.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "options.h"
#include "status.h"

#define MAX_ARGS 256

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mq_log_init(0, 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* one block of NUL-terminated strings, like the kernel's argv */
	char *block = malloc(size + 1);
	char *argv[MAX_ARGS + 2];
	if (!block)
		return 0;
	memcpy(block, data, size);
	block[size] = '\0';
	int argc = 0;
	argv[argc++] = "mq-dist";
	for (size_t i = 0; i < size && argc <= MAX_ARGS; i += strlen(block + i) + 1)
		argv[argc++] = block + i;
	argv[argc] = NULL;
	struct mq_options o;
	struct mq_error err = { 0 };
	if (mq_options_parse(argc, argv, &o, &err) == 0) {
		if (o.input && !o.output) {
			char *def = mq_options_default_output(&o, 0);
			free(def);
			def = mq_options_default_output(&o, 1);
			free(def);
		}
		struct mq_buf b = MQ_BUF_INIT;
		mq_options_json(&o, &b);
		mq_buf_release(&b);
	} else if (!err.code) {
		mq_fuzz_abort("a failure without a message");
	}
	mq_options_release(&o);
	free(block);
	return 0;
}
