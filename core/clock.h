/*
** clock.h: the wall clock and its text form, for every layer (trial
** timestamps, log lines, CSV cells).
*/
#ifndef HPO_CORE_CLOCK_H
#define HPO_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* The wall clock in ms since the epoch. */
int64_t hpo_now_ms(void);

/* Format a ms timestamp as RFC 3339 UTC with milliseconds into buf (>= 32 bytes). */
void hpo_format_time(int64_t ms, char *buf, size_t len);

#endif
