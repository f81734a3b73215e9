/* vdlvm: logging, crc32c, uuids, run directory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "pool_int.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the on-disk format is little-endian and read in place");

static void default_log(int level, const char *msg)
{
    if (level <= VD_LOG_WARN || getenv("VDLVM_DEBUG"))
        fprintf(stderr, "vdlvm: %s%s\n",
                level == VD_LOG_WARN ? "warning: " : "", msg);
}

/* Set once at start-up, before other threads exist. */
static vd_log_fn g_log_fn = default_log;

void vd_log_set_fn(vd_log_fn fn)
{
    g_log_fn = fn ? fn : default_log;
}

void vd_log(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    int saved = errno;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    g_log_fn(level, msg);
    errno = saved;
}

int64_t vd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *vd_rundir(void)
{
    const char *d = getenv("VDLVM_RUNDIR");
    return d && *d ? d : "/run/vdlvm";
}

/* crc32c, slicing-by-1 table, generated on first use (thread-safe through
 * pthread_once). */
static uint32_t g_crc_table[256];
static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        g_crc_table[i] = c;
    }
}

uint32_t vd_crc32c(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    pthread_once(&g_crc_once, crc_init);
    crc = ~crc;
    while (len--)
        crc = g_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void vd_uuid_gen(uint8_t uuid[16])
{
    size_t got = 0;

    while (got < 16) {
        ssize_t n = getrandom(uuid + got, 16 - got, 0);
        if (n > 0)
            got += n;
        else if (errno != EINTR)
            abort(); /* getrandom cannot fail for 16 bytes once seeded */
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
}

void vd_uuid_str(const uint8_t u[16], char out[37])
{
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
             u[11], u[12], u[13], u[14], u[15]);
}
