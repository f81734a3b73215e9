/* vdlvm: per-volume I/O counters (see stats.h for who writes and reads
 * them, and why relaxed atomics are enough). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "pool_int.h"
#include "stats.h"

const uint64_t vd_lat_bounds_us[VD_LAT_NBOUNDS] = {
    50,    100,   250,   500,    1000,   2500,    5000,
    10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
};

struct vd_vol_stats {
    struct vd_vol_stats *next; /* g_stats, under g_lock; never unlinked */
    char pool[VD_NAME_MAX + 1];
    char vol[VD_NAME_MAX + 1];
    uint32_t luns;           /* under g_lock */
    struct vd_io_counters c; /* relaxed atomics only */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* g_stats, luns */
static struct vd_vol_stats *g_stats;                       /* newest first */

vd_vol_stats *vd_vol_stats_get(const char *pool, const char *vol)
{
    struct vd_vol_stats *s;

    if (!pool || !vol || !vd_name_is_valid(pool) || !vd_name_is_valid(vol)) {
        errno = EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&g_lock);
    for (s = g_stats; s; s = s->next)
        if (!strcmp(s->pool, pool) && !strcmp(s->vol, vol))
            break;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            pthread_mutex_unlock(&g_lock);
            errno = ENOMEM;
            return NULL;
        }
        strcpy(s->pool, pool);
        strcpy(s->vol, vol);
        s->next = g_stats;
        g_stats = s;
    }
    s->luns++;
    pthread_mutex_unlock(&g_lock);
    return s;
}

void vd_vol_stats_put(vd_vol_stats *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&g_lock);
    if (s->luns > 0)
        s->luns--;
    pthread_mutex_unlock(&g_lock);
}

unsigned vd_lat_bucket(uint64_t ns)
{
    unsigned i = 0;

    while (i < VD_LAT_NBOUNDS && ns > vd_lat_bounds_us[i] * 1000)
        i++;
    return i;
}

static void add(uint64_t *p, uint64_t v)
{
    __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

void vd_vol_stats_account(vd_vol_stats *s, enum vd_io_op op, uint64_t bytes,
                          uint64_t ns, int failed)
{
    if (!s || (unsigned)op >= VD_IO_NOPS)
        return;
    add(&s->c.ops[op], 1);
    if (bytes)
        add(&s->c.bytes[op], bytes);
    if (failed)
        add(&s->c.errors[op], 1);
    add(&s->c.lat_ns_sum[op], ns);
    add(&s->c.lat[op][vd_lat_bucket(ns)], 1);
}

static void load_counters(struct vd_io_counters *dst,
                          const struct vd_io_counters *src)
{
    const uint64_t *s = (const uint64_t *)src;
    uint64_t *d = (uint64_t *)dst;

    for (size_t i = 0; i < sizeof(*src) / sizeof(uint64_t); i++)
        d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

int vd_vol_stats_snapshot(const char *pool, struct vd_vol_stats_snap **out,
                          size_t *n)
{
    struct vd_vol_stats_snap *v = NULL;
    size_t cnt = 0, i;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&g_lock);
    for (struct vd_vol_stats *s = g_stats; s; s = s->next)
        cnt += !strcmp(s->pool, pool);
    if (cnt) {
        v = calloc(cnt, sizeof(*v));
        if (!v) {
            pthread_mutex_unlock(&g_lock);
            return -ENOMEM;
        }
    }
    /* g_stats is newest first: fill from the end, oldest first out. */
    i = cnt;
    for (struct vd_vol_stats *s = g_stats; s && i; s = s->next) {
        if (strcmp(s->pool, pool))
            continue;
        i--;
        strcpy(v[i].vol, s->vol);
        v[i].luns = s->luns;
        load_counters(&v[i].c, &s->c);
    }
    pthread_mutex_unlock(&g_lock);
    *out = v;
    *n = cnt;
    return 0;
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void vd_dev_count_error(struct vd_dev *d, int op)
{
    uint64_t *c = op == VD_BIO_READ    ? &d->n_read_errors
                  : op == VD_BIO_WRITE ? &d->n_write_errors
                                       : &d->n_flush_errors;
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

int vd_pool_dev_get_counters(const vd_pool *cp, uint32_t i,
                             struct vd_dev_counters *out)
{
    vd_pool *p = (vd_pool *)cp;
    const struct vd_dev *d;
    int r = 0;

    memset(out, 0, sizeof(*out));
    vd_admin_lock(p);
    if (i >= p->ndevs) {
        r = -ENOENT;
    } else {
        d = &p->devs[i];
        out->read_errors = load(&d->n_read_errors);
        out->write_errors = load(&d->n_write_errors);
        out->flush_errors = load(&d->n_flush_errors);
        if (d->bdev)
            out->reconnects = load(&d->bdev->n_reconnects);
    }
    vd_admin_unlock(p);
    return r;
}
