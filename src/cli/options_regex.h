/*
 * options_regex: the checks of an --include or --exclude pattern, for
 * options.c: its cost for regcomp first, then regcomp itself.
 */
#ifndef MQ_OPTIONS_REGEX_H
#define MQ_OPTIONS_REGEX_H

#include "status.h"

/*
 * Limits on --include and --exclude patterns, checked before regcomp sees
 * them. glibc's regcomp writes a repeated subexpression out once per
 * repetition and builds closures over the copies, so its time and memory grow
 * with the product of nested repetitions: 'a' and 24 stacked '+' (each one
 * doubles the copies) take gigabytes and seconds, and a{1,32767} alone 2 GiB.
 * Refused: stacked quantifiers (a++, a*{2}: undefined in POSIX anyway),
 * back-references (not POSIX extended), a bound above MQ_REGEX_MAX_REPEAT,
 * a pattern longer than MQ_REGEX_MAX_LEN, and one whose repetitions, written
 * out, exceed MQ_REGEX_MAX_COPIES atoms (an atom counts once, times 2 under
 * each *, + or ?, times m under each {n,m}).
 */
#define MQ_REGEX_MAX_LEN 1024     /* bytes */
#define MQ_REGEX_MAX_REPEAT 255   /* POSIX's smallest RE_DUP_MAX */
#define MQ_REGEX_MAX_COPIES 2048  /* regcomp then stays within about 40 MiB and 0.05 s */

/* 0, or a usage error naming the option (--opt) and the pattern re, and what to simplify. */
int mq_options_check_regex(const char *re, const char *opt, struct mq_error *err);

#endif
