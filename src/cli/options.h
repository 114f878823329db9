/*
 * options: argv into a validated struct mq_options, from one table that also
 * prints --help. No MPI, no I/O beyond printing help and version. Every rank
 * parses the same argv and reaches the same result.
 */
#ifndef MQ_OPTIONS_H
#define MQ_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* Parses argv. On a usage error returns MQ_ERR_USAGE with a message. */
int mq_options_parse(int argc, char **argv, struct mq_options *o, struct mq_error *err);
void mq_options_print_help(FILE *fp);

/* One command-line argument: an option (long name, value or NULL) or a positional (name NULL). */
struct mq_optarg {
	const char *name;
	const char *value;
};

/* Splits argv[first..] into options and positionals, without applying them (*out malloc'd). */
int mq_options_split(int argc, char **argv, int first, struct mq_optarg **out, int *n, struct mq_error *err);
/* Whether a long option exists (0), takes a value, and may be repeated. */
int mq_options_lookup(const char *long_name, int *takes_value, int *repeatable);
/* The i-th option's long name in table order, or NULL past the end. */
const char *mq_options_name(int i);

#endif
