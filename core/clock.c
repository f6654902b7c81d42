/*
** clock.c: the wall clock and RFC 3339 timestamps (clock.h).
*/
#include <time.h>

#include "clock.h"

int64_t hpo_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted). */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static char *put_digits(char *p, int v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

void hpo_format_time(int64_t ms, char *buf, size_t len)
{
    /* Hand-rolled: this runs four times per trial in every reply. */
    int64_t secs = ms / 1000, days = secs / 86400, rem = secs % 86400;
    int y, mo, d;
    char *p = buf;

    if (len < 25 || ms < 0) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return;
    }
    civil_from_days(days, &y, &mo, &d);
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, mo, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, (int)(rem / 3600), 2);
    *p++ = ':';
    p = put_digits(p, (int)(rem / 60 % 60), 2);
    *p++ = ':';
    p = put_digits(p, (int)(rem % 60), 2);
    *p++ = '.';
    p = put_digits(p, (int)(ms % 1000), 3);
    *p++ = 'Z';
    *p = '\0';
}
