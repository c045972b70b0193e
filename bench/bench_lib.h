/* What every bench program that links the library shares (bench_util.h is for all of them,
 * with or without the library). Include after mpsupervisor.h, with _GNU_SOURCE defined. */
#ifndef MPSUP_BENCH_LIB_H
#define MPSUP_BENCH_LIB_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "mpsupervisor.h"

/* Exits with the call's name, the result's name and the library's message unless `r` is OK. */
static inline void check(mpsup_result r, const char *call)
{
    if (r != MPSUP_OK) {
        fprintf(stderr, "%s: %s: %s: %s\n", program_invocation_short_name, call,
                mpsup_result_name(r), mpsup_last_error_message());
        exit(1);
    }
}

#endif
