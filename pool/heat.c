/* vdlvm: heat counters of a volume's extents (pool/tier.h says who owns
 * what and what each field costs).  vd_heat_count runs in the I/O path:
 * a few relaxed atomic loads and adds, no lock, no allocation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tier.h"

#define RLX __ATOMIC_RELAXED

int vd_heat_alloc(struct vd_vol *v)
{
    uint64_t es = v->pool->extent_size;
    uint64_t n = v->le_count > v->data_le0 ? v->le_count - v->data_le0 : 0;
    uint64_t nsize = v->size / es + !!(v->size % es);
    const char *off = getenv("VDLVM_HEAT");
    struct vd_heat *h;

    if (v->heat || (off && !strcmp(off, "0"))) /* 0: not counted (bench) */
        return 0;
    /* a thin volume's data space grows up to its size (pool/thin.c), and
     * never beyond the pool's extents (an overcommitted 1 PiB thin volume
     * must not cost 18 GB of counters) */
    uint64_t npool = 0;
    for (uint32_t i = 0; i < v->pool->ndevs; i++)
        if (v->pool->devs[i].used)
            npool += v->pool->devs[i].pe_count;
    if (nsize > npool)
        nsize = npool;
    if (nsize > n)
        n = nsize;
    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->n = n;
    while ((1ull << h->shift) < es)
        h->shift++;
    h->cnt = calloc(n ? 2 * n : 1, sizeof(*h->cnt));
    h->hist = calloc(n ? VD_HEAT_HIST * n : 1, sizeof(*h->hist));
    if (!h->cnt || !h->hist) {
        free(h->cnt);
        free(h->hist);
        free(h);
        return -ENOMEM;
    }
    __atomic_store_n(&v->heat, h, __ATOMIC_RELEASE);
    return 0;
}

void vd_heat_free(struct vd_vol *v)
{
    struct vd_heat *h = v->heat;

    if (!h)
        return;
    v->heat = NULL;
    free(h->cnt);
    free(h->hist);
    free(h);
}

/* The stream detector: true when this I/O continues a run that is already
 * longer than VD_HEAT_STREAM_BYTES.  An I/O that continues no slot takes
 * the slot with the shortest run, so random I/O churns the short slots and
 * a stream keeps its own. */
static bool in_stream(struct vd_heat *h, uint64_t off, uint64_t len)
{
    int min = 0;
    uint64_t min_run = UINT64_MAX;

    for (int i = 0; i < VD_HEAT_SLOTS; i++) {
        struct vd_heat_slot *s = &h->slot[i];
        uint64_t next = __atomic_load_n(&s->next, RLX);
        if (next == off && off) {
            __atomic_store_n(&s->next, off + len, RLX);
            uint64_t run = __atomic_add_fetch(&s->run, len, RLX);
            return run - len >= VD_HEAT_STREAM_BYTES;
        }
        uint64_t run = __atomic_load_n(&s->run, RLX);
        if (run < min_run) {
            min_run = run;
            min = i;
        }
    }
    __atomic_store_n(&h->slot[min].next, off + len, RLX);
    __atomic_store_n(&h->slot[min].run, len, RLX);
    return false;
}

static void count(struct vd_heat *h, uint64_t off, uint64_t len, bool write)
{
    uint64_t e = off >> h->shift, last = (off + len - 1) >> h->shift;
    /* an I/O spans at most a few extents; count each once */
    for (; e <= last && e < h->n; e++)
        __atomic_fetch_add(&h->cnt[2 * e + write], 1, RLX);
}

/* A thin volume: whether the calling thread's current I/O continues a
 * stream (decided at its virtual offset by vd_heat_count, used by the
 * vd_heat_count_lower calls the thin layout makes for the same I/O on the
 * same thread).  A lower call with no volume call before it (thin's own
 * copies) uses the thread's previous value: one I/O miscounted at most. */
static __thread bool tl_skip;
/* the last extent the thread's current thin I/O counted: an I/O split
 * into chunks counts once per extent, as on any volume */
static __thread uint64_t tl_last;

void vd_heat_count(struct vd_vol *v, uint64_t off, uint64_t len, bool write)
{
    struct vd_heat *h = __atomic_load_n(&v->heat, __ATOMIC_ACQUIRE);
    bool stream;

    if (!h || !len) {
        tl_skip = true;
        return;
    }
    stream = in_stream(h, off, len);
    if (v->upper) { /* counted where its chunks are: vd_heat_count_lower */
        tl_skip = stream;
        tl_last = UINT64_MAX;
        return;
    }
    if (!stream)
        count(h, off, len, write);
}

void vd_heat_count_lower(struct vd_vol *v, uint64_t off, uint64_t len,
                         bool write)
{
    struct vd_heat *h = __atomic_load_n(&v->heat, __ATOMIC_ACQUIRE);

    if (!h || !len || tl_skip)
        return;
    uint64_t e = off >> h->shift, last = (off + len - 1) >> h->shift;
    for (; e <= last && e < h->n; e++)
        if (e != tl_last)
            __atomic_fetch_add(&h->cnt[2 * e + write], 1, RLX);
    tl_last = last;
}

void vd_heat_decay(struct vd_heat *h)
{
    uint32_t *row = h->hist + (uint64_t)h->hist_head * h->n;

    for (uint64_t e = 0; e < h->n; e++) {
        uint32_t r = __atomic_load_n(&h->cnt[2 * e], RLX);
        uint32_t w = __atomic_load_n(&h->cnt[2 * e + 1], RLX);
        /* subtract what halving removes: concurrent adds are kept */
        __atomic_fetch_sub(&h->cnt[2 * e], r - r / 2, RLX);
        __atomic_fetch_sub(&h->cnt[2 * e + 1], w - w / 2, RLX);
        row[e] = r + w < r ? UINT32_MAX : r + w;
    }
    h->hist_head = (h->hist_head + 1) % VD_HEAT_HIST;
    if (h->hist_len < VD_HEAT_HIST)
        h->hist_len++;
}

void vd_heat_get(const struct vd_heat *h, uint64_t e, uint32_t *reads,
                 uint32_t *writes)
{
    *reads = e < h->n ? __atomic_load_n(&h->cnt[2 * e], RLX) : 0;
    *writes = e < h->n ? __atomic_load_n(&h->cnt[2 * e + 1], RLX) : 0;
}
