/* vdlvm: tiering — the pass planner, the tiering state and its metadata
 * record, the background pass (docs/tiering.md; heat in pool/heat.c).
 *
 * State and locks: p->tier (settings, pass times), struct vd_dev.tier and
 * struct vd_vol.tier_off are read and written under the pool's admin lock
 * only (metadata apply, admin calls, the background thread's tick, which
 * takes the lock).  The heat counters are the I/O threads' (tier.h).
 *
 * A pass: under the admin lock, gather every logical data extent of the
 * volumes concerned (leg by leg) with its heat and device, and plan
 * (vd_tier_plan, pure).  The moves then go to the extent mover one by
 * one; the mover (issue 12) copies online and switches the mapping with
 * one metadata commit.  Data moves: no copy stays behind in a cache.
 *
 * A crash (kill -9, power) mid-pass.  What is on disk: the mapping, each
 * extent on exactly one device per leg, and the mover's checkpoint of the
 * move in flight.  What is lost: the heat counters and the pass's list of
 * moves not yet started (both in memory only, by design: persisting heat
 * would cost a metadata write per interval per volume for a hint).  So:
 * - data: safe.  A move not started changed nothing; the move in flight
 *   resumes at the next open from its checkpoint without copying twice
 *   and switches the mapping in one commit; a finished move is committed.
 *   Every write acknowledged before the crash reads back (test-tier.sh:
 *   kill -9 mid-move under a verifying vdload write load);
 * - the moves left: redone by the next pass.  Heat counts again from the
 *   open; the next background pass, one interval after the open (the
 *   heat's half-life: the counts then hold one interval of I/O, half of
 *   their steady level, and the plan depends on their order and on a
 *   low floor, VD_TIER_MIN_HEAT), or a `tier run`, plans from that heat
 *   and the mapping as it is: an extent still hot
 *   is promoted then (test-tier.sh: after the restart, the extent the
 *   killed pass did not reach goes up in the next pass).  An extent that
 *   went cold in between is no longer worth moving.  Until then the
 *   extents wait where they were: correct, only slower.
 *
 * Interleavings: I/O counts heat while a pass plans (the plan uses a
 * snapshot of the counters; a few I/Os more or less change nothing that
 * hysteresis does not absorb).  An admin command (extend, remove) between
 * the plan and a move: each move is checked again against the mapping
 * under the admin lock before the mover gets it (move_start: the extent
 * still on `from`, the volume still there with tiering on), and the mover
 * checks it again itself.  The mover runs one move at a time: a pass
 * starts its next move only when the mover is idle (an evacuation keeps
 * it busy: the pass waits).  The background pass (bg_mv) is the
 * background thread's under the admin lock; `tier run` without --wait
 * replaces it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tier.h"

struct vd_tier {
    struct vd_conf_tiering set; /* settings (REC_POOL or the definition) */
    int set_known;              /* set came from a record or the YAML */
    int64_t next_decay_ms, next_pass_ms;
    /* the background pass under way: its moves, the next one to start */
    struct vd_tier_move *bg_mv;
    size_t bg_n, bg_i, bg_moved;
    /* the last `tier run --wait` pass (run_moves, on its command's
     * thread): its volume, bytes done and planned, while run_active; for
     * status (vd_tier_get), so a client of the tgtd running it can draw
     * its bar */
    uint32_t run_vol;
    int run_active;
    uint64_t run_done, run_total;
};

/* ---- the extent mover ----------------------------------------------------
 * pool/move.c (issue 12): one move at a time, online, crash-safe (a move
 * in flight resumes after a restart from its checkpoint; the mapping
 * switches in one commit).  A pass hands it its moves one by one. */
#define VD_HAVE_MOVER 1

/* Start move m if it still fits the mapping: 0, -ESTALE (the extent is
 * elsewhere now, or its volume is gone: skipped), or the mover's error
 * (-EBUSY: another move runs). */
static int move_start(vd_pool *p, const struct vd_tier_move *m, uint64_t rate)
{
    char vol[VD_NAME_MAX + 1], to[VD_NAME_MAX + 1];
    struct vd_vol *v;
    uint64_t le;

    vd_admin_lock(p);
    v = vd_vol_find_id(p, m->vol);
    le = v ? m->le + v->data_le0 : 0;
    if (!v || v->tier_off || m->leg >= v->copies || le >= v->le_count ||
        v->map[le * v->copies + m->leg].dev != m->from || m->to >= p->ndevs) {
        vd_admin_unlock(p);
        return -ESTALE;
    }
    snprintf(vol, sizeof(vol), "%s", v->name);
    snprintf(to, sizeof(to), "%s", p->devs[m->to].name);
    vd_admin_unlock(p);
    return vd_move_extent(p, vol, m->leg, le, to, rate);
}

static bool mover_busy(vd_pool *p)
{
    struct vd_move_status st;

    return vd_pool_move_status(p, &st) < 0 || st.active || st.evacuating;
}

/* ---- state ------------------------------------------------------------ */
static struct vd_tier *tier_get(vd_pool *p)
{
    if (!p->tier) {
        p->tier = calloc(1, sizeof(*p->tier));
        if (!p->tier)
            return NULL;
        p->tier->set.interval_ms = 60000;
        p->tier->set.rate = 64ull << 20;
        p->tier->set.fast_free_pct = 10;
    }
    return p->tier;
}

void vd_tier_free(vd_pool *p)
{
    if (p->tier)
        free(p->tier->bg_mv);
    free(p->tier);
    p->tier = NULL;
}

static const char *tier_name(uint32_t t)
{
    return t == VD_CONF_TIER_FAST ? "fast" : "slow";
}

int vd_tier_md_apply(vd_pool *p, const struct vd_op_hdr *h)
{
    const struct vd_op_tier *o = (const void *)h;
    struct vd_tier *t;
    struct vd_vol *v;

    if (h->len < sizeof(*o)) {
        vd_log(VD_LOG_ERR, "pool '%s': metadata op tier too short", p->name);
        return -EINVAL;
    }
    switch (o->kind) {
    case VD_TIER_REC_POOL:
        if (o->value > 1 || o->fast_free_pct > 90 || o->interval_ms < 1000)
            break;
        if (!(t = tier_get(p)))
            return -ENOMEM;
        t->set.given = 1;
        t->set.enabled = (int)o->value;
        t->set.interval_ms = o->interval_ms;
        t->set.rate = o->rate;
        t->set.fast_free_pct = o->fast_free_pct;
        t->set_known = 1;
        return 0;
    case VD_TIER_REC_DEV:
        if (o->idx >= p->ndevs || !p->devs[o->idx].used ||
            o->value >= VD_CONF_NTIERS)
            break;
        p->devs[o->idx].tier = o->value;
        return 0;
    case VD_TIER_REC_VOL:
        v = vd_vol_find_id(p, o->h.vol);
        if (!v || o->value > 1)
            break;
        v->tier_off = o->value;
        return 0;
    }
    vd_log(VD_LOG_ERR,
           "pool '%s': metadata op tier (kind %u) does not fit the pool "
           "(written by a newer vdlvm?)",
           p->name, o->kind);
    return -EINVAL;
}

static void rec_pool(struct vd_op_tier *o, const struct vd_conf_tiering *s)
{
    memset(o, 0, sizeof(*o));
    o->h.h.type = VD_OP_TIER;
    o->kind = VD_TIER_REC_POOL;
    o->value = s->enabled ? 1 : 0;
    o->rate = s->rate;
    o->interval_ms = s->interval_ms;
    o->fast_free_pct = s->fast_free_pct;
}

static void rec_simple(struct vd_op_tier *o, uint32_t kind, uint32_t vol,
                       uint32_t idx, uint32_t value)
{
    memset(o, 0, sizeof(*o));
    o->h.h.type = VD_OP_TIER;
    o->h.vol = vol;
    o->kind = kind;
    o->idx = idx;
    o->value = value;
}

int vd_tier_md_serialize(const vd_pool *p, struct vd_opbuf *b)
{
    struct vd_op_tier o;
    int r;

    if (p->tier && p->tier->set_known) {
        rec_pool(&o, &p->tier->set);
        if ((r = vd_opbuf_add(b, &o, sizeof(o))) < 0)
            return r;
    }
    for (uint32_t i = 0; i < p->ndevs; i++) {
        if (!p->devs[i].used || !p->devs[i].tier)
            continue;
        rec_simple(&o, VD_TIER_REC_DEV, 0, i, p->devs[i].tier);
        if ((r = vd_opbuf_add(b, &o, sizeof(o))) < 0)
            return r;
    }
    for (uint32_t i = 0; i < p->nvols; i++) {
        if (!p->vols[i]->tier_off)
            continue;
        rec_simple(&o, VD_TIER_REC_VOL, p->vols[i]->id, 0, 1);
        if ((r = vd_opbuf_add(b, &o, sizeof(o))) < 0)
            return r;
    }
    return 0;
}

int vd_tier_configure(vd_pool *p, const struct vd_conf_pool *conf)
{
    struct vd_opbuf ops = { 0 };
    struct vd_op_tier o;
    struct vd_tier *t;
    int r = 0;

    vd_admin_lock(p);
    if (!(t = tier_get(p))) {
        r = -ENOMEM;
        goto out;
    }
    const struct vd_conf_tiering *s = &conf->tiering;
    struct vd_conf_tiering want = t->set;
    if (s->given) {
        want = *s;
    } else if (t->set_known) {
        /* the section was removed from the definition: passes stop */
        want.enabled = 0;
        want.given = 0;
    }
    if (s->given || t->set_known) {
        if (!t->set_known || want.enabled != t->set.enabled ||
            want.interval_ms != t->set.interval_ms ||
            want.rate != t->set.rate ||
            want.fast_free_pct != t->set.fast_free_pct) {
            rec_pool(&o, &want);
            if ((r = vd_opbuf_add(&ops, &o, sizeof(o))) < 0)
                goto out;
        }
    }
    for (size_t i = 0; i < conf->ndevs; i++)
        for (uint32_t j = 0; j < p->ndevs; j++) {
            struct vd_dev *d = &p->devs[j];
            if (!d->used || strcmp(d->name, conf->devs[i].name) ||
                d->tier == conf->devs[i].tier)
                continue;
            rec_simple(&o, VD_TIER_REC_DEV, 0, j, conf->devs[i].tier);
            if ((r = vd_opbuf_add(&ops, &o, sizeof(o))) < 0)
                goto out;
            vd_log(VD_LOG_INFO, "pool '%s': device '%s': tier %s", p->name,
                   d->name, tier_name(conf->devs[i].tier));
        }
    if (ops.nops)
        r = vd_md_commit(p, &ops);
out:
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r;
}

int vd_vol_set_tiering(vd_pool *p, const char *name, int on)
{
    struct vd_opbuf ops = { 0 };
    struct vd_op_tier o;
    struct vd_vol *v;
    int r = 0;

    vd_admin_lock(p);
    v = name ? vd_vol_find(p, name) : NULL;
    if (!v) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': not found; list volumes with 'vdlvm vol list "
               "%s'",
               p->name, name ? name : "", p->name);
        r = -ENOENT;
        goto out;
    }
    if ((uint32_t)!on == v->tier_off)
        goto out;
    rec_simple(&o, VD_TIER_REC_VOL, v->id, 0, on ? 0 : 1);
    if ((r = vd_opbuf_add(&ops, &o, sizeof(o))) == 0)
        r = vd_md_commit(p, &ops);
    if (r == 0)
        vd_log(VD_LOG_INFO, "volume '%s/%s': tiering %s", p->name, v->name,
               on ? "on" : "off");
out:
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r;
}

/* ---- the planner ---------------------------------------------------------- */
static int cmp_heat_desc(const void *a, const void *b)
{
    const struct vd_tier_cand *x = *(const struct vd_tier_cand *const *)a;
    const struct vd_tier_cand *y = *(const struct vd_tier_cand *const *)b;
    if (x->heat != y->heat)
        return x->heat < y->heat ? 1 : -1;
    if (x->vol != y->vol)
        return x->vol < y->vol ? -1 : 1;
    return x->le < y->le ? -1 : x->le > y->le;
}

static int cmp_heat_asc(const void *a, const void *b)
{
    return cmp_heat_desc(b, a);
}

/* The device of tier `fast` (1) or a slower one (0) with the most free
 * extents that c may move to; UINT32_MAX if none. */
static uint32_t pick_dev(const struct vd_tier_devs *d, const uint64_t *room,
                         const struct vd_tier_cand *c, int fast)
{
    uint32_t best = UINT32_MAX;

    for (uint32_t i = 0; i < d->n; i++) {
        if (!d->usable[i] || !room[i] || i == c->dev)
            continue;
        if ((d->tier[i] == VD_CONF_TIER_FAST) != !!fast)
            continue;
        if (c->same_node && d->node[i] != d->node[c->dev])
            continue;
        if (best == UINT32_MAX || room[i] > room[best])
            best = i;
    }
    return best;
}

static int add_move(struct vd_tier_move **mv, size_t *n, size_t *cap,
                    const struct vd_tier_cand *c, uint32_t to, int promote)
{
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        struct vd_tier_move *m = realloc(*mv, nc * sizeof(*m));
        if (!m)
            return -ENOMEM;
        *mv = m;
        *cap = nc;
    }
    (*mv)[(*n)++] = (struct vd_tier_move){ .vol = c->vol,
                                           .leg = c->leg,
                                           .le = c->le,
                                           .from = c->dev,
                                           .to = to,
                                           .heat = c->heat,
                                           .promote = promote };
    return 0;
}

int vd_tier_plan(const struct vd_tier_cand *c, size_t n,
                 const struct vd_tier_devs *d, const struct vd_tier_params *pr,
                 struct vd_tier_move **mv, size_t *nmv)
{
    const struct vd_tier_cand **hot = NULL, **cold = NULL;
    uint64_t *room = NULL, fast_total = 0, fast_free = 0, reserve;
    size_t nhot = 0, ncold = 0, cap = 0, ci = 0;
    uint64_t max = pr->max_moves ? pr->max_moves : UINT64_MAX;
    int r = -ENOMEM;

    *mv = NULL;
    *nmv = 0;
    hot = malloc((n ? n : 1) * sizeof(*hot));
    cold = malloc((n ? n : 1) * sizeof(*cold));
    room = malloc((d->n ? d->n : 1) * sizeof(*room));
    if (!hot || !cold || !room)
        goto out;
    for (uint32_t i = 0; i < d->n; i++) {
        room[i] = d->usable[i] ? d->free[i] : 0;
        if (d->usable[i] && d->tier[i] == VD_CONF_TIER_FAST) {
            fast_total += d->total[i];
            fast_free += d->free[i];
        }
    }
    reserve = vd_div_up(fast_total * pr->fast_free_pct, 100);
    for (size_t i = 0; i < n; i++) {
        if (c[i].dev >= d->n || !d->usable[c[i].dev])
            continue; /* a device that cannot be read: not moved */
        if (d->tier[c[i].dev] == VD_CONF_TIER_FAST)
            cold[ncold++] = &c[i];
        else if (c[i].heat >= pr->min_heat)
            hot[nhot++] = &c[i];
    }
    qsort(hot, nhot, sizeof(*hot), cmp_heat_desc);
    qsort(cold, ncold, sizeof(*cold), cmp_heat_asc);

    /* Over the reserve: demote the coldest fast extents. */
    while (fast_free < reserve && ci < ncold && *nmv < max) {
        const struct vd_tier_cand *x = cold[ci];
        uint32_t to = pick_dev(d, room, x, 0);
        if (to == UINT32_MAX)
            break;
        if ((r = add_move(mv, nmv, &cap, x, to, 0)) < 0)
            goto out;
        room[to]--;
        room[x->dev]++;
        fast_free++;
        ci++;
    }
    /* The hottest slow extents up while the reserve holds; when it does
     * not, in place of a fast extent much colder (hysteresis). */
    for (size_t hi = 0; hi < nhot && *nmv < max; hi++) {
        const struct vd_tier_cand *x = hot[hi];
        uint32_t to =
            fast_free > reserve ? pick_dev(d, room, x, 1) : UINT32_MAX;
        if (to != UINT32_MAX) {
            if ((r = add_move(mv, nmv, &cap, x, to, 1)) < 0)
                goto out;
            room[to]--;
            room[x->dev]++;
            fast_free--;
            continue;
        }
        /* swap with the coldest fast extent left, if much colder */
        if (ci >= ncold || *nmv + 2 > max)
            break;
        const struct vd_tier_cand *y = cold[ci];
        if (x->heat < y->heat * VD_TIER_SWAP_FACTOR + pr->min_heat)
            break; /* every later pair is closer still */
        if (x->same_node && d->node[y->dev] != d->node[x->dev])
            continue;
        uint32_t down = pick_dev(d, room, y, 0);
        if (down == UINT32_MAX)
            break;
        if ((r = add_move(mv, nmv, &cap, y, down, 0)) < 0 ||
            (r = add_move(mv, nmv, &cap, x, y->dev, 1)) < 0)
            goto out;
        room[down]--;
        room[x->dev]++;
        ci++;
    }
    r = 0;
out:
    if (r < 0) {
        free(*mv);
        *mv = NULL;
        *nmv = 0;
    }
    free(hot);
    free(cold);
    free(room);
    return r;
}

/* ---- passes ------------------------------------------------------------- */
/* The pool's devices for the planner (admin lock held); free with
 * devs_free. */
struct devs_buf {
    struct vd_tier_devs d;
    uint32_t *tier, *node;
    uint64_t *free, *total;
    bool *usable;
};

static void devs_free(struct devs_buf *b)
{
    free(b->tier);
    free(b->node);
    free(b->free);
    free(b->total);
    free(b->usable);
}

static int devs_get(const vd_pool *p, struct devs_buf *b)
{
    uint32_t n = p->ndevs ? p->ndevs : 1;

    memset(b, 0, sizeof(*b));
    b->tier = calloc(n, sizeof(*b->tier));
    b->node = calloc(n, sizeof(*b->node));
    b->free = calloc(n, sizeof(*b->free));
    b->total = calloc(n, sizeof(*b->total));
    b->usable = calloc(n, sizeof(*b->usable));
    if (!b->tier || !b->node || !b->free || !b->total || !b->usable) {
        devs_free(b);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        b->tier[i] = d->tier;
        b->node[i] = i;
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(p->devs[j].node, d->node)) {
                b->node[i] = j;
                break;
            }
        b->usable[i] = d->used && d->bdev && d->state == VD_DEV_OK;
        b->total[i] = d->used ? d->pe_count : 0;
        b->free[i] = d->used ? d->pe_count - d->used_count : 0;
    }
    b->d = (struct vd_tier_devs){ .n = p->ndevs,
                                  .tier = b->tier,
                                  .free = b->free,
                                  .total = b->total,
                                  .node = b->node,
                                  .usable = b->usable };
    return 0;
}

/* Append v's data extents (every leg) to *c (admin lock held).  Every
 * layout: a thin volume's data extents hold its chunks and carry their
 * heat (vd_heat_count_lower); a snapshot view has no data extents of its
 * own (its plan is empty). */
static int cands_add(struct vd_vol *v, struct vd_tier_cand **c, size_t *n,
                     size_t *cap)
{
    for (uint64_t le = v->data_le0; le < v->le_count; le++)
        for (uint32_t leg = 0; leg < v->copies; leg++) {
            const struct vd_pe *e = &v->map[le * v->copies + leg];
            uint32_t r = 0, w = 0;
            if (e->dev == VD_NO_DEV)
                continue;
            if (*n == *cap) {
                size_t nc = *cap ? 2 * *cap : 64;
                struct vd_tier_cand *m = realloc(*c, nc * sizeof(*m));
                if (!m)
                    return -ENOMEM;
                *c = m;
                *cap = nc;
            }
            if (v->heat)
                vd_heat_get(v->heat, le - v->data_le0, &r, &w);
            (*c)[(*n)++] = (struct vd_tier_cand){ .vol = v->id,
                                                  .leg = leg,
                                                  .le = le - v->data_le0,
                                                  .dev = e->dev,
                                                  .same_node = v->copies > 1,
                                                  .heat = (uint64_t)r + w };
        }
    return 0;
}

static void params_get(vd_pool *p, struct vd_tier_params *pr)
{
    struct vd_tier *t = tier_get(p);
    uint32_t interval = t ? t->set.interval_ms : 60000;
    uint64_t rate = t ? t->set.rate : 0;

    pr->fast_free_pct = t ? t->set.fast_free_pct : 10;
    pr->min_heat = VD_TIER_MIN_HEAT;
    /* the rate limit as extents per pass, at least one */
    pr->max_moves = 0;
    if (rate) {
        pr->max_moves = rate * (interval / 1000) / p->extent_size;
        if (!pr->max_moves)
            pr->max_moves = 1;
    }
}

/* Plan for vol (NULL: every volume with tiering on); admin lock held. */
static int plan_locked(vd_pool *p, struct vd_vol *vol, struct vd_tier_move **mv,
                       size_t *nmv)
{
    struct vd_tier_cand *c = NULL;
    size_t n = 0, cap = 0;
    struct vd_tier_params pr;
    struct devs_buf db;
    int r = 0;

    for (uint32_t i = 0; i < p->nvols && r == 0; i++) {
        struct vd_vol *v = p->vols[i];
        if (vol ? v != vol : v->tier_off)
            continue;
        r = cands_add(v, &c, &n, &cap);
    }
    if (r == 0 && (r = devs_get(p, &db)) == 0) {
        params_get(p, &pr);
        r = vd_tier_plan(c, n, &db.d, &pr, mv, nmv);
        devs_free(&db);
    }
    free(c);
    return r;
}

static struct vd_vol *find_tierable(vd_pool *p, const char *name)
{
    struct vd_vol *v = name ? vd_vol_find(p, name) : NULL;

    if (!v) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': not found; list volumes with 'vdlvm vol list "
               "%s'",
               p->name, name ? name : "", p->name);
        errno = ENOENT;
        return NULL;
    }
    return v;
}

int vd_tier_plan_vol(vd_pool *p, const char *name, struct vd_tier_move **mv,
                     size_t *nmv)
{
    struct vd_vol *v;
    int r;

    *mv = NULL;
    *nmv = 0;
    vd_admin_lock(p);
    v = find_tierable(p, name);
    r = v ? plan_locked(p, v, mv, nmv) : -errno;
    vd_admin_unlock(p);
    return r;
}

/* Until the mover is idle (0), its last move was abandoned (-EIO), or
 * 30 minutes passed (-ETIMEDOUT); every 200 ms cb(arg, base + the bytes
 * of the extent moving now, total), when cb is set.  The abandoned count
 * is compared across the whole wait (vd_move_wait compares within one
 * call only, and this waits in 200 ms calls). */
static int wait_idle(vd_pool *p, vd_tier_progress_fn cb, void *arg,
                     uint64_t base, uint64_t total)
{
    struct vd_move_status st;
    uint64_t aborted0;
    int64_t end = vd_now_ms() + 30 * 60 * 1000;
    int r;

    if (vd_pool_move_status(p, &st) < 0)
        return -EIO;
    aborted0 = st.stats.moves_aborted;
    for (;;) {
        r = vd_move_wait(p, cb ? 200 : 30 * 60 * 1000);
        if (r != -ETIMEDOUT || vd_now_ms() >= end)
            break;
        if (vd_pool_move_status(p, &st) == 0 && st.active && st.total)
            cb(arg, base + (st.done < st.total ? st.done : st.total), total);
    }
    if (r == 0 && vd_pool_move_status(p, &st) == 0 &&
        st.stats.moves_aborted != aborted0)
        r = -EIO;
    return r;
}

/* The moves of a pass, here, one after the other: a move already
 * running (one resumed after a restart, an evacuation) finishes first;
 * its outcome is not this pass's.  Progress in bytes: extent_size per
 * move; a skipped move (-ESTALE) counts as done. */
/* The progress of a --wait pass: published for status (admin lock, held
 * for the stores only), then passed on to the caller's cb. */
struct run_pg {
    vd_pool *p;
    uint32_t vol;
    vd_tier_progress_fn cb;
    void *arg;
};

static void run_publish(vd_pool *p, uint32_t vol, int active, uint64_t done,
                        uint64_t total)
{
    struct vd_tier *t;

    vd_admin_lock(p);
    if ((t = tier_get(p))) {
        t->run_vol = vol;
        t->run_active = active;
        t->run_done = done;
        t->run_total = total;
    }
    vd_admin_unlock(p);
}

static void run_pg_cb(void *arg, uint64_t done, uint64_t total)
{
    struct run_pg *rp = arg;

    run_publish(rp->p, rp->vol, 1, done, total);
    if (rp->cb)
        rp->cb(rp->arg, done, total);
}

static int run_moves(vd_pool *p, const struct vd_tier_move *mv, size_t n,
                     uint64_t rate, vd_tier_progress_fn ucb, void *uarg,
                     size_t *moved)
{
    uint64_t es = p->extent_size, total = (uint64_t)n * es;
    struct run_pg rp = { p, n ? mv[0].vol : 0, ucb, uarg };
    vd_tier_progress_fn cb = n ? run_pg_cb : ucb;
    void *arg = n ? (void *)&rp : uarg;
    int r = 0;

    for (size_t i = 0; r == 0 && i < n; i++) {
        if (cb)
            cb(arg, i * es, total);
        wait_idle(p, NULL, NULL, 0, 0);
        r = move_start(p, &mv[i], rate);
        if (r == -ESTALE) {
            r = 0;
            continue;
        }
        if (r == 0)
            r = wait_idle(p, cb, arg, i * es, total);
        if (r == 0)
            (*moved)++;
    }
    if (cb && r == 0)
        cb(arg, total, total);
    if (n)
        run_publish(p, rp.vol, 0, 0, 0);
    return r;
}

static int tier_run(vd_pool *p, const char *name, int wait,
                    vd_tier_progress_fn cb, void *arg, size_t *moved)
{
    struct vd_tier_move *mv = NULL;
    size_t n = 0;
    struct vd_vol *v;
    struct vd_tier *t;
    uint64_t rate;
    int r;

    *moved = 0;
    vd_admin_lock(p);
    v = find_tierable(p, name);
    if (!v) {
        vd_admin_unlock(p);
        return -errno;
    }
    if (v->tier_off) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': tiering is off; turn it on with 'vdlvm vol "
               "set %s/%s --tiering on'",
               p->name, name, p->name, name);
        vd_admin_unlock(p);
        return -EINVAL;
    }
    t = tier_get(p);
    rate = t ? t->set.rate : 0;
    r = plan_locked(p, v, &mv, &n);
    if (r == 0 && !wait && t) {
        /* the background thread starts the moves one by one */
        free(t->bg_mv);
        t->bg_mv = mv;
        t->bg_n = n;
        t->bg_i = t->bg_moved = 0;
        *moved = n;
        mv = NULL;
        vd_admin_unlock(p);
        vd_bg_kick(p);
        return 0;
    }
    vd_admin_unlock(p);
    if (r == 0)
        r = run_moves(p, mv, n, rate, cb, arg, moved);
    free(mv);
    return r;
}

int vd_tier_run(vd_pool *p, const char *name, int wait, size_t *moved)
{
    return tier_run(p, name, wait, NULL, NULL, moved);
}

int vd_tier_run_wait(vd_pool *p, const char *name, vd_tier_progress_fn cb,
                     void *arg, size_t *moved)
{
    return tier_run(p, name, 1, cb, arg, moved);
}

int vd_tier_get(vd_pool *p, const char *name, struct vd_tier_info *ti,
                struct vd_tier_ext **ext, size_t *next, uint32_t **hist)
{
    struct vd_vol *v;
    struct vd_tier *t;
    int r = 0;

    memset(ti, 0, sizeof(*ti));
    *ext = NULL;
    *next = 0;
    *hist = NULL;
    vd_admin_lock(p);
    v = name ? vd_vol_find(p, name) : NULL;
    if (!v) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': not found; list volumes with 'vdlvm vol list "
               "%s'",
               p->name, name ? name : "", p->name);
        r = -ENOENT;
        goto out;
    }
    t = tier_get(p);
    ti->pool_enabled = t && t->set.enabled;
    ti->interval_ms = t ? t->set.interval_ms : 60000;
    ti->rate = t ? t->set.rate : 0;
    ti->fast_free_pct = t ? t->set.fast_free_pct : 10;
    ti->vol_on = !v->tier_off;
    ti->mover = VD_HAVE_MOVER;
    /* every layout tiers: linear, mirror (leg by leg, each on its own
     * node), thin (its data extents: heat counted where its chunks are,
     * vd_heat_count_lower) */
    ti->supported = 1;
    ti->extent_size = p->extent_size;
    ti->copies = v->copies;
    if (t && t->run_active && t->run_vol == v->id) {
        ti->pass_running = 1;
        ti->pass_done = t->run_done;
        ti->pass_total = t->run_total;
    } else if (t && t->bg_mv) {
        /* the background pass: this volume's moves in it; the first bg_i
         * were started, the last of them maybe still copying */
        size_t tot = 0, fin = 0;
        uint64_t cur = 0;
        for (size_t k = 0; k < t->bg_n; k++)
            if (t->bg_mv[k].vol == v->id) {
                tot++;
                fin += k < t->bg_i;
            }
        struct vd_move_status st;
        const struct vd_tier_move *last =
            t->bg_i ? &t->bg_mv[t->bg_i - 1] : NULL;
        if (fin && last && last->vol == v->id &&
            vd_pool_move_status(p, &st) == 0 && st.active &&
            !strcmp(st.vol, v->name) && st.le == last->le + v->data_le0) {
            fin--;
            cur = st.done < st.total ? st.done : st.total;
        }
        if (tot) {
            ti->pass_running = 1;
            ti->pass_done = fin * p->extent_size + cur;
            ti->pass_total = tot * p->extent_size;
        }
    }
    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        if (!d->used || d->tier != VD_CONF_TIER_FAST)
            continue;
        ti->fast_extents += d->pe_count;
        ti->fast_free += d->pe_count - d->used_count;
    }
    uint64_t nle = v->le_count - v->data_le0;
    *ext = calloc(nle * v->copies + 1, sizeof(**ext));
    if (!*ext) {
        r = -ENOMEM;
        goto out;
    }
    for (uint64_t le = 0; le < nle; le++)
        for (uint32_t leg = 0; leg < v->copies; leg++) {
            const struct vd_pe *e =
                &v->map[(le + v->data_le0) * v->copies + leg];
            struct vd_tier_ext *x = &(*ext)[le * v->copies + leg];
            x->le = le;
            x->leg = leg;
            x->dev = e->dev == VD_NO_DEV ? UINT32_MAX : e->dev;
            x->tier = e->dev == VD_NO_DEV ? 0 : p->devs[e->dev].tier;
            if (v->heat)
                vd_heat_get(v->heat, le, &x->reads, &x->writes);
        }
    *next = nle * v->copies;
    struct vd_heat *h = v->heat;
    if (h && h->hist_len) {
        *hist = calloc((size_t)h->hist_len * h->n + 1, sizeof(**hist));
        if (!*hist) {
            r = -ENOMEM;
            goto out;
        }
        /* oldest row first */
        uint32_t first =
            (h->hist_head + VD_HEAT_HIST - h->hist_len) % VD_HEAT_HIST;
        for (uint32_t row = 0; row < h->hist_len; row++)
            memcpy(*hist + (uint64_t)row * h->n,
                   h->hist + (uint64_t)((first + row) % VD_HEAT_HIST) * h->n,
                   h->n * sizeof(**hist));
        ti->hist_rows = h->hist_len;
        ti->units = h->n;
    }
out:
    vd_admin_unlock(p);
    if (r < 0) {
        free(*ext);
        *ext = NULL;
        *next = 0;
    }
    return r;
}

/* The background pass: start its next move when the mover is idle. */
static void bg_pass_step(vd_pool *p, struct vd_tier *t)
{
    while (t->bg_i < t->bg_n) {
        if (mover_busy(p))
            return;
        int r = move_start(p, &t->bg_mv[t->bg_i], t->set.rate);
        if (r == -EBUSY)
            return;
        t->bg_i++;
        if (r == 0) {
            t->bg_moved++;
            return;
        }
    }
    if (t->bg_mv && !mover_busy(p)) {
        if (t->bg_moved)
            vd_log(VD_LOG_INFO,
                   "pool '%s': tiering pass: %zu of %zu moves done", p->name,
                   t->bg_moved, t->bg_n);
        free(t->bg_mv);
        t->bg_mv = NULL;
        t->bg_n = t->bg_i = t->bg_moved = 0;
    }
}

void vd_tier_tick(vd_pool *p)
{
    int64_t now = vd_now_ms();
    struct vd_tier *t;

    vd_admin_lock(p);
    t = tier_get(p);
    if (!t) {
        vd_admin_unlock(p);
        return;
    }
    if (!t->next_decay_ms)
        t->next_decay_ms = t->next_pass_ms = now + t->set.interval_ms;
    /* A pass plans from the heat before it decays. */
    if (now >= t->next_pass_ms) {
        t->next_pass_ms = now + t->set.interval_ms;
        if (t->set.enabled && !t->bg_mv)
            plan_locked(p, NULL, &t->bg_mv, &t->bg_n);
        if (t->bg_mv && !t->bg_n) {
            free(t->bg_mv);
            t->bg_mv = NULL;
        }
    }
    if (now >= t->next_decay_ms) {
        t->next_decay_ms = now + t->set.interval_ms;
        for (uint32_t i = 0; i < p->nvols; i++)
            if (p->vols[i]->heat)
                vd_heat_decay(p->vols[i]->heat);
    }
    if (t->bg_mv)
        bg_pass_step(p, t);
    vd_admin_unlock(p);
}
