/* vdlvm QoS: persistent per-volume limits (metadata op VD_OP_QOS) and the
 * token-bucket limiter (contract in qos.h).
 *
 * Shared state and its lock
 * - struct vd_vol.qos (the limits) and .qos_rates (published rates) of every
 *   volume are protected by g_qos_lock, a leaf lock held only to copy them:
 *   nothing is called while holding it.  Writers: md apply (admin lock
 *   held, on the committing thread or at open) and vd_vol_qos_publish
 *   (tgtd's main thread).  Readers: vd_vol_qos_get (tgtd's main thread,
 *   which must not wait on the admin lock: the admin lock is held across
 *   metadata writes to devices; g_qos_lock never is) and status.
 * - Interleavings: a `vol set` commit and tgtd's main thread reading the
 *   limits: the reader sees the old or the new set, never a mix (one copy
 *   under the lock); it reads them after the commit because the control
 *   command asks the main thread to refresh only once vd_admin_exec has
 *   returned.  A failed commit leaves the state untouched (apply runs
 *   only after the record is written, as for every op), so a refused or
 *   failed `vol set` changes nothing anywhere.
 * - struct vd_qos (the limiter) has no lock: one owner thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "pool_int.h"

static pthread_mutex_t g_qos_lock = PTHREAD_MUTEX_INITIALIZER;

/* On disk (little-endian), type VD_OP_QOS: the whole limit set of one
 * volume; a later record replaces an earlier one.  Written only while some
 * limit is set or to clear them (all zero). */
struct vd_op_qos {
    struct vd_op_lhdr h;            /*  0: h.vol = volume id */
    uint32_t burst_ms;              /* 12: 0 = default (1000) */
    uint64_t limit[VD_QOS_NLIMITS]; /* 16: iops, riops, wiops, bps, rbps,
                                       wbps; 0 = none */
};
_Static_assert(sizeof(struct vd_op_qos) == 64, "op qos");

static const char *const g_names[VD_QOS_NLIMITS] = {
    "iops-limit", "read-iops-limit", "write-iops-limit",
    "bps-limit",  "read-bps-limit",  "write-bps-limit",
};

const char *vd_qos_name(enum vd_qos_kind k)
{
    return (unsigned)k < VD_QOS_NLIMITS ? g_names[k] : "?";
}

static bool is_iops(int k)
{
    return k <= VD_QOS_WIOPS;
}

bool vd_qos_limits_any(const struct vd_qos_limits *l)
{
    for (int k = 0; k < VD_QOS_NLIMITS; k++)
        if (l->limit[k])
            return true;
    return false;
}

int vd_qos_limits_check(const struct vd_qos_limits *l, char *msg, size_t len)
{
    for (int k = 0; k < VD_QOS_NLIMITS; k++) {
        uint64_t max = is_iops(k) ? VD_QOS_IOPS_MAX : VD_QOS_BPS_MAX;
        if (l->limit[k] > max) {
            snprintf(msg, len,
                     "--%s %" PRIu64 " is above the largest limit %" PRIu64
                     "; give a smaller value, or 0 for none",
                     g_names[k], l->limit[k], max);
            return -EINVAL;
        }
    }
    if (l->burst_ms > VD_QOS_BURST_MS_MAX) {
        snprintf(msg, len,
                 "--burst %u.%03us is above the largest burst of %us; give "
                 "a shorter one",
                 l->burst_ms / 1000, l->burst_ms % 1000,
                 VD_QOS_BURST_MS_MAX / 1000);
        return -EINVAL;
    }
    return 0;
}

/* ---- metadata ---------------------------------------------------------- */

int vd_qos_md_apply(vd_pool *p, const struct vd_op_hdr *h)
{
    const struct vd_op_qos *o = (const void *)h;
    struct vd_qos_limits l;
    struct vd_vol *v;
    char m[256];

    memset(&l, 0, sizeof(l));
    if (h->len < sizeof(*o)) {
        vd_log(VD_LOG_ERR, "pool '%s': metadata op qos too short", p->name);
        return -EINVAL;
    }
    v = vd_vol_find_id(p, o->h.vol);
    if (!v) {
        vd_log(VD_LOG_ERR, "pool '%s': metadata op qos names unknown volume %u",
               p->name, o->h.vol);
        return -EINVAL;
    }
    memcpy(l.limit, o->limit, sizeof(l.limit));
    l.burst_ms = o->burst_ms;
    if (vd_qos_limits_check(&l, m, sizeof(m)) < 0) {
        vd_log(VD_LOG_ERR, "pool '%s': volume '%s': metadata op qos: %s",
               p->name, v->name, m);
        return -EINVAL;
    }
    pthread_mutex_lock(&g_qos_lock);
    v->qos = l;
    pthread_mutex_unlock(&g_qos_lock);
    return 0;
}

int vd_qos_md_serialize(const struct vd_vol *v, struct vd_opbuf *b)
{
    struct vd_op_qos o;
    struct vd_qos_limits l;

    pthread_mutex_lock(&g_qos_lock);
    l = v->qos;
    pthread_mutex_unlock(&g_qos_lock);
    if (!vd_qos_limits_any(&l) && !l.burst_ms)
        return 0;
    memset(&o, 0, sizeof(o));
    o.h.h.type = VD_OP_QOS;
    o.h.vol = v->id;
    o.burst_ms = l.burst_ms;
    memcpy(o.limit, l.limit, sizeof(o.limit));
    return vd_opbuf_add(b, &o, sizeof(o));
}

int vd_vol_qos_set(vd_pool *p, const char *name, const struct vd_qos_limits *l,
                   unsigned mask)
{
    struct vd_opbuf ops = { 0 };
    struct vd_op_qos o;
    struct vd_qos_limits nl;
    struct vd_vol *v;
    char m[256];
    int r;

    vd_admin_lock(p);
    v = name ? vd_vol_find(p, name) : NULL;
    if (!v) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': not found; list volumes with 'vdlvm vol "
               "list %s'",
               p->name, name ? name : "", p->name);
        r = -ENOENT;
        goto out;
    }
    pthread_mutex_lock(&g_qos_lock);
    nl = v->qos;
    pthread_mutex_unlock(&g_qos_lock);
    for (int k = 0; k < VD_QOS_NLIMITS; k++)
        if (mask & (1u << k))
            nl.limit[k] = l->limit[k];
    if (mask & VD_QOS_MASK_BURST)
        nl.burst_ms = l->burst_ms;
    if (vd_qos_limits_check(&nl, m, sizeof(m)) < 0) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': %s", p->name, name, m);
        r = -EINVAL;
        goto out;
    }
    memset(&o, 0, sizeof(o));
    o.h.h.type = VD_OP_QOS;
    o.h.vol = v->id;
    o.burst_ms = nl.burst_ms;
    memcpy(o.limit, nl.limit, sizeof(o.limit));
    if ((r = vd_opbuf_add(&ops, &o, sizeof(o))) == 0)
        r = vd_md_commit(p, &ops); /* applies the op: v->qos = nl */
out:
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r;
}

void vd_vol_qos_get(struct vd_vol *v, struct vd_qos_limits *l)
{
    pthread_mutex_lock(&g_qos_lock);
    *l = v->qos;
    pthread_mutex_unlock(&g_qos_lock);
}

int vd_vol_qos_get_by_name(vd_pool *p, const char *name,
                           struct vd_qos_limits *l)
{
    struct vd_vol *v;
    int r = -ENOENT;

    vd_admin_lock(p);
    v = vd_vol_find(p, name);
    if (v) {
        vd_vol_qos_get(v, l);
        r = 0;
    }
    vd_admin_unlock(p);
    return r;
}

void vd_vol_qos_publish(struct vd_vol *v, const struct vd_qos_rates *r)
{
    pthread_mutex_lock(&g_qos_lock);
    v->qos_rates = *r;
    pthread_mutex_unlock(&g_qos_lock);
}

int vd_vol_qos_rates(vd_pool *p, const char *name, struct vd_qos_rates *out)
{
    struct vd_vol *v;
    int r = -ENOENT;

    vd_admin_lock(p);
    v = vd_vol_find(p, name);
    if (v) {
        pthread_mutex_lock(&g_qos_lock);
        *out = v->qos_rates;
        pthread_mutex_unlock(&g_qos_lock);
        r = 0;
    }
    vd_admin_unlock(p);
    return r;
}

/* ---- the limiter -------------------------------------------------------- */

#define NS 1000000000ull

static void refill(struct vd_qos_bucket *b, uint64_t now)
{
    unsigned __int128 add;

    if (!b->rate || now <= b->last_ns) {
        if (now > b->last_ns)
            b->last_ns = now;
        return;
    }
    if (b->tokens >= b->depth) {
        b->last_ns = now;
        b->rem = 0;
        return;
    }
    add = (unsigned __int128)(now - b->last_ns) * b->rate + b->rem;
    b->last_ns = now;
    /* (depth - tokens) is at most depth + the largest debt, far below
     * 2^63; compare before narrowing. */
    if (add / NS >= (unsigned __int128)(b->depth - b->tokens)) {
        b->tokens = b->depth;
        b->rem = 0;
    } else {
        b->tokens += (int64_t)(add / NS);
        b->rem = (uint64_t)(add % NS);
    }
}

void vd_qos_configure(struct vd_qos *q, const struct vd_qos_limits *l,
                      uint64_t now_ns)
{
    uint64_t burst = l->burst_ms ? l->burst_ms : VD_QOS_BURST_MS_DEFAULT;

    q->active = false;
    for (int k = 0; k < VD_QOS_NLIMITS; k++) {
        struct vd_qos_bucket *b = &q->b[k];
        uint64_t rate = l->limit[k];
        int64_t depth;

        if (!rate) {
            memset(b, 0, sizeof(*b));
            continue;
        }
        q->active = true;
        depth = (int64_t)(((unsigned __int128)rate * burst) / 1000);
        if (depth < 1)
            depth = 1;
        if (!b->rate) { /* newly limited: starts full */
            b->tokens = depth;
            b->rem = 0;
        } else {
            refill(b, now_ns); /* at the old rate, up to now */
            if (b->tokens > depth)
                b->tokens = depth;
        }
        b->rate = rate;
        b->depth = depth;
        b->last_ns = now_ns;
    }
}

/* Nanoseconds until b holds `need` tokens (need <= depth). */
static uint64_t time_to(const struct vd_qos_bucket *b, int64_t need)
{
    unsigned __int128 missing;
    uint64_t t;

    if (b->tokens >= need)
        return 0;
    missing = (unsigned __int128)(need - b->tokens) * NS - b->rem;
    t = (uint64_t)((missing + b->rate - 1) / b->rate);
    return t ? t : 1;
}

/* The cost of a command for bucket i of vd_qos_admit's list. */
static int64_t cost_of(int i, uint64_t bytes)
{
    if (i < 2)
        return 1; /* IOPS buckets */
    return bytes > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)bytes;
}

bool vd_qos_admit(struct vd_qos *q, bool write, uint64_t bytes, uint64_t now_ns,
                  uint64_t *wait_ns)
{
    const int kinds[4] = { VD_QOS_IOPS, write ? VD_QOS_WIOPS : VD_QOS_RIOPS,
                           VD_QOS_BPS, write ? VD_QOS_WBPS : VD_QOS_RBPS };
    uint64_t wait = 0;

    if (!q->active)
        return true;
    for (int i = 0; i < 4; i++) {
        struct vd_qos_bucket *b = &q->b[kinds[i]];
        int64_t cost = cost_of(i, bytes);
        uint64_t t;

        if (!b->rate)
            continue;
        refill(b, now_ns);
        t = time_to(b, cost < b->depth ? cost : b->depth);
        if (t > wait)
            wait = t;
    }
    if (wait) {
        *wait_ns = wait;
        return false;
    }
    for (int i = 0; i < 4; i++) {
        struct vd_qos_bucket *b = &q->b[kinds[i]];
        if (b->rate)
            b->tokens -= cost_of(i, bytes);
    }
    return true;
}
