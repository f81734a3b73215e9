/* vdlvm: the pool's background thread — about every 250 ms it retries
 * the devices that were missing or failed (vd_pool_retry_devices), then
 * calls the tick of each volume whose layout has one (the mirror: probe
 * failed legs, resync, clear bitmap bits).  Started by vd_pool_open,
 * stopped by vd_pool_close, which then quiesces every volume.
 *
 * Locks: g->lock protects g->stop and is the mutex of g->cond (a stop or
 * a kick wakes the thread, and a layout sleeping in vd_bg_sleep).  It is
 * never held across anything else.  A tick runs with no lock held and a
 * reference on the volume (open_count, under the admin lock), so the
 * volume is not removed while it runs; the admin lock is not held between
 * ticks, so admin commands interleave with background work.
 *
 * The thread blocks every signal (tgtd's SIGUSR2 stays with tgtd's own
 * threads).  It waits only on pthread conditions and through the layout's
 * and device code (the fault simulator wraps these). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool_int.h"
#include "crypt.h"
#include "tier.h"

struct vd_bg {
    pthread_t thread;
    pthread_mutex_t lock; /* protects stop; the mutex of cond */
    pthread_cond_t cond;
    int stop;
};

static void deadline(struct timespec *ts, int64_t ns)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ns / 1000000000LL;
    ts->tv_nsec += ns % 1000000000LL;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void vd_bg_sleep(vd_pool *p, int64_t ns)
{
    struct vd_bg *g = p->bg;
    struct timespec ts;

    if (!g) {
        ts.tv_sec = ns / 1000000000LL;
        ts.tv_nsec = ns % 1000000000LL;
        nanosleep(&ts, NULL);
        return;
    }
    pthread_mutex_lock(&g->lock);
    deadline(&ts, ns);
    if (!g->stop)
        pthread_cond_timedwait(&g->cond, &g->lock, &ts);
    pthread_mutex_unlock(&g->lock);
}

bool vd_bg_stopping(vd_pool *p)
{
    struct vd_bg *g = p->bg;
    bool s;

    if (!g)
        return false;
    pthread_mutex_lock(&g->lock);
    s = g->stop;
    pthread_mutex_unlock(&g->lock);
    return s;
}

void vd_bg_kick(vd_pool *p)
{
    struct vd_bg *g = p->bg;

    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* The next volume from *i on whose layout has a tick, with a reference
 * taken so that it is not removed while the thread uses it. */
static struct vd_vol *next_vol(vd_pool *p, uint32_t *i)
{
    struct vd_vol *v = NULL;

    vd_admin_lock(p);
    while (*i < p->nvols) {
        struct vd_vol *c = p->vols[(*i)++];
        if (c->lops->tick || (c->upper && c->upper->tick)) {
            c->open_count++;
            v = c;
            break;
        }
    }
    vd_admin_unlock(p);
    return v;
}

static void put_vol(struct vd_vol *v)
{
    vd_admin_lock(v->pool);
    v->open_count--;
    vd_admin_unlock(v->pool);
}

static void *bg_main(void *arg)
{
    vd_pool *p = arg;
    struct vd_bg *g = p->bg;

    for (;;) {
        struct timespec ts;
        pthread_mutex_lock(&g->lock);
        deadline(&ts, 250 * 1000000LL);
        if (!g->stop)
            pthread_cond_timedwait(&g->cond, &g->lock, &ts);
        int stop = g->stop;
        pthread_mutex_unlock(&g->lock);
        if (stop)
            break;
        vd_pool_retry_devices(p);
        vd_tier_tick(p);  /* tiering: decay, passes (pool/tier.c) */
        vd_move_tick(p);  /* the extent mover (pool/move.c) */
        vd_crypt_tick(p); /* vol encrypt's moves (pool/crypt.c) */
        uint32_t i = 0;
        struct vd_vol *v;
        while ((v = next_vol(p, &i))) {
            if (v->lops->tick)
                v->lops->tick(v);
            if (v->upper && v->upper->tick)
                v->upper->tick(v);
            put_vol(v);
            if (vd_bg_stopping(p))
                break;
        }
    }
    return NULL;
}

int vd_bg_start(vd_pool *p)
{
    struct vd_bg *g;
    sigset_t all, old;
    int r;

    if (p->bg)
        return 0;
    g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    p->bg = g;
    /* tgtd's SIGUSR2 and every other signal stay with tgtd's threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = pthread_create(&g->thread, NULL, bg_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r) {
        p->bg = NULL;
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
        free(g);
        vd_log(VD_LOG_ERR, "pool '%s': cannot start the background thread: %s",
               p->name, strerror(r));
        return -r;
    }
    return 0;
}

void vd_bg_stop(vd_pool *p)
{
    struct vd_bg *g = p->bg;

    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stop = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->thread, NULL);
    /* Background state durable (the mirror's cleared bits), while the
     * thread can no longer race with it. */
    for (uint32_t i = 0; i < p->nvols; i++) {
        if (p->vols[i]->lops->quiesce)
            p->vols[i]->lops->quiesce(p->vols[i]);
        if (p->vols[i]->upper && p->vols[i]->upper->quiesce)
            p->vols[i]->upper->quiesce(p->vols[i]);
    }
    p->bg = NULL;
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    free(g);
}
