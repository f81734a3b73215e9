/* vdlvm: io_uring for local files and block devices (the file driver's
 * submit op, pool/dev.c; issue 14).
 *
 * One ring per device, created at the device's first submit (the vdlvm
 * command never submits, so it never makes one) and freed by the device's
 * close.  A request occupies one of the ring's RING_DEPTH slots from
 * submit to completion (no allocation per request); a slot holds the bio
 * and how many bytes are done, so a short read or write is continued by
 * resubmitting the rest, and a read past the end of a short file reads
 * zeroes, as file_pread does.  READ / WRITE are IORING_OP_READ / _WRITE
 * (VD_IO_FUA: RWF_DSYNC), FLUSH is IORING_OP_FSYNC with
 * IORING_FSYNC_DATASYNC.
 *
 * Reaping
 *   Every ring signals the same eventfd (io_uring_register_eventfd), g_efd.
 *   A process with an event loop (tgtd, through bs_vdlvm.so) calls
 *   vd_async_fd() before its first pool opens, watches that fd and calls
 *   vd_async_poll() on its loop's thread: completions then run on tgtd's
 *   main thread, no thread hop.  Otherwise (tests, any other program) the
 *   first ring starts one reaper thread (all signals blocked) that does
 *   the same until an event loop takes over (it then leaves).
 *   vd_async_poll reads the eventfd first and only then looks at the
 *   rings and the volume requests that ended (vd_vol_async_run, vol.c:
 *   asynchronous volume I/O posts its completions to the same eventfd
 *   with vd_async_signal), so a completion posted during a pass signals
 *   again and is never stranded.
 *
 * Locks and ownership
 *   g_lock (leaf for everything but the done callbacks): the ring list,
 *   g_efd creation, g_external, the reaper.  vd_async_poll holds it for its
 *   whole pass, done callbacks included, so that vd_uring_close (which
 *   unlinks its ring under g_lock) never frees a ring, or returns to a
 *   device close that frees the device, while a pass is inside one of its
 *   callbacks.  u->lock: the ring's SQ and CQ, its slots and inflight;
 *   held only for a few non-blocking steps (io_uring_enter for submit
 *   does not wait for I/O), never across a done callback.  Lock order:
 *   g_lock -> u->lock.  A done callback may submit to any ring (u->lock
 *   only) but must not call vd_async_poll or vd_uring_close.
 *
 * A submit that io_uring_enter refuses (-EBUSY, -ENOMEM) after its SQE
 * was queued turns that SQE into a NOP before any later enter can see it
 * and returns -EAGAIN: nothing started, as the contract says.
 *
 * Close: the device is no longer submitted to (the pool closes devices
 * only once no I/O runs, and bs_vdlvm drains its commands first), so
 * vd_uring_close unlinks the ring (a running pass finishes first), then
 * waits for and completes anything still in flight on its own thread. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <liburing.h>

#include "uring.h"

#define RING_DEPTH  256u
#define REAP_BATCH  32u
#define MAX_RETRIES 16u

struct uslot {
    struct vd_bio *bio; /* NULL: free */
    size_t done;        /* bytes read or written so far */
    unsigned retries;   /* -EINTR / -EAGAIN results resubmitted */
    int next_free;
};

struct vd_uring {
    struct io_uring ring;
    int fd;
    pthread_mutex_t lock; /* ring, slots, free_head, inflight */
    unsigned inflight;
    int free_head;
    struct uslot slots[RING_DEPTH];
    struct vd_uring *next; /* g_rings, under g_lock */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vd_uring *g_rings; /* under g_lock */
static int g_efd = -1;           /* created once, never closed */
static bool g_external;          /* an event loop reaps (vd_async_fd) */
static bool g_reaper;            /* the reaper thread runs */
static bool g_logged;            /* "no io_uring" said once */

static int efd_get_locked(void)
{
    if (g_efd < 0)
        __atomic_store_n(&g_efd, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
                         __ATOMIC_RELEASE);
    return g_efd;
}

int vd_async_fd(void)
{
    int fd;

    pthread_mutex_lock(&g_lock);
    __atomic_store_n(&g_external, true, __ATOMIC_RELEASE);
    fd = efd_get_locked();
    if (fd >= 0)
        vd_async_signal(); /* a running reaper leaves */
    pthread_mutex_unlock(&g_lock);
    return fd < 0 ? -errno : fd;
}

static void reap_rings_locked(void);

/* The reaper leaves as soon as an event loop takes over (vd_async_fd, or
 * vd_async_set_external in tests), without reading the eventfd, so that
 * the loop still sees it readable. */
static void *reaper_main(void *arg)
{
    struct pollfd pfd = { .fd = (int)(intptr_t)arg, .events = POLLIN };
    uint64_t n;

    for (;;) {
        if (poll(&pfd, 1, -1) <= 0)
            continue;
        pthread_mutex_lock(&g_lock);
        if (g_external) {
            g_reaper = false;
            pthread_mutex_unlock(&g_lock);
            return NULL;
        }
        while (read(g_efd, &n, sizeof(n)) < 0 && errno == EINTR)
            ;
        reap_rings_locked();
        pthread_mutex_unlock(&g_lock);
    }
    return NULL;
}

/* g_lock held. */
static int reaper_start_locked(int efd)
{
    sigset_t all, old;
    pthread_t t;
    int r;

    if (g_external || g_reaper)
        return 0;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = pthread_create(&t, NULL, reaper_main, (void *)(intptr_t)efd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r)
        return -r;
    pthread_detach(t);
    g_reaper = true;
    return 0;
}

static void say_once_locked(const char *fmt, const char *name, int err)
{
    if (g_logged)
        return;
    g_logged = true;
    vd_log(VD_LOG_WARN, fmt, name, strerror(err));
}

struct vd_uring *vd_uring_open(int fd, const char *name)
{
    const char *env = getenv("VDLVM_URING");
    struct vd_uring *u;
    int r, efd;

    pthread_mutex_lock(&g_lock);
    if (env && !strcmp(env, "0")) {
        if (!g_logged)
            vd_log(VD_LOG_WARN,
                   "device '%s': io_uring is off (VDLVM_URING=0); "
                   "local devices use the worker threads",
                   name);
        g_logged = true;
        goto fail;
    }
    if ((efd = efd_get_locked()) < 0) {
        say_once_locked("device '%s': eventfd for io_uring failed: %s; "
                        "local devices use the worker threads",
                        name, errno);
        goto fail;
    }
    if (!(u = calloc(1, sizeof(*u))))
        goto fail;
    if ((r = io_uring_queue_init(RING_DEPTH, &u->ring, 0)) < 0) {
        say_once_locked("device '%s': io_uring is unavailable: %s; local "
                        "devices use the worker threads",
                        name, -r);
        free(u);
        goto fail;
    }
    if ((r = io_uring_register_eventfd(&u->ring, efd)) < 0 ||
        (r = reaper_start_locked(efd)) < 0) {
        say_once_locked("device '%s': io_uring set-up failed: %s; local "
                        "devices use the worker threads",
                        name, -r);
        io_uring_queue_exit(&u->ring);
        free(u);
        goto fail;
    }
    u->fd = fd;
    pthread_mutex_init(&u->lock, NULL);
    for (unsigned i = 0; i < RING_DEPTH; i++)
        u->slots[i].next_free = i + 1 < RING_DEPTH ? (int)i + 1 : -1;
    u->free_head = 0;
    u->next = g_rings;
    g_rings = u;
    pthread_mutex_unlock(&g_lock);
    return u;
fail:
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

/* u->lock held: queue the (rest of the) slot's request.  -EAGAIN: no SQE. */
static int prep_locked(struct vd_uring *u, unsigned idx)
{
    struct uslot *s = &u->slots[idx];
    struct vd_bio *bio = s->bio;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

    if (!sqe)
        return -EAGAIN;
    switch (bio->op) {
    case VD_BIO_READ:
        io_uring_prep_read(sqe, u->fd, (char *)bio->buf + s->done,
                           (unsigned)(bio->len - s->done), bio->off + s->done);
        break;
    case VD_BIO_WRITE:
        io_uring_prep_write(sqe, u->fd, (char *)bio->buf + s->done,
                            (unsigned)(bio->len - s->done), bio->off + s->done);
        sqe->rw_flags = (bio->flags & VD_IO_FUA) ? RWF_DSYNC : 0;
        break;
    default:
        io_uring_prep_fsync(sqe, u->fd, IORING_FSYNC_DATASYNC);
        break;
    }
    io_uring_sqe_set_data64(sqe, idx + 1);
    return 0;
}

/* u->lock held: hand queued SQEs to the kernel.  0, or the enter's error
 * with the SQEs still queued. */
static int enter_locked(struct vd_uring *u)
{
    int r = 0;

    for (unsigned i = 0; i < 8; i++) {
        r = io_uring_submit(&u->ring);
        if (r >= 0)
            return 0;
        if (r != -EINTR && r != -EAGAIN)
            break;
    }
    return r;
}

static void slot_free_locked(struct vd_uring *u, unsigned idx)
{
    u->slots[idx].bio = NULL;
    u->slots[idx].next_free = u->free_head;
    u->free_head = (int)idx;
    u->inflight--;
}

int vd_uring_submit(struct vd_uring *u, struct vd_bio *bio)
{
    unsigned idx;
    int r;

    if (bio->op != VD_BIO_FLUSH && bio->len > (1u << 30))
        return -EAGAIN; /* one SQE carries 32 bits of length */
    pthread_mutex_lock(&u->lock);
    if (u->free_head < 0) {
        pthread_mutex_unlock(&u->lock);
        return -EAGAIN;
    }
    idx = (unsigned)u->free_head;
    u->free_head = u->slots[idx].next_free;
    u->slots[idx] = (struct uslot){ .bio = bio };
    u->inflight++;
    r = prep_locked(u, idx);
    if (r == 0 && (r = enter_locked(u)) < 0) {
        /* not consumed by the kernel: neutralise it (see the header) */
        unsigned mask = u->ring.sq.ring_mask;
        unsigned head = __atomic_load_n(u->ring.sq.khead, __ATOMIC_ACQUIRE);
        for (unsigned t = head; t != *u->ring.sq.ktail; t++) {
            struct io_uring_sqe *q = &u->ring.sq.sqes[t & mask];
            if (q->user_data == idx + 1) {
                io_uring_prep_nop(q);
                io_uring_sqe_set_data64(q, 0);
            }
        }
        vd_log(VD_LOG_DEBUG, "io_uring submit: %s (retried later)",
               strerror(-r));
        r = -EAGAIN;
    }
    if (r < 0)
        slot_free_locked(u, idx);
    pthread_mutex_unlock(&u->lock);
    return r;
}

unsigned vd_uring_inflight(struct vd_uring *u)
{
    unsigned n;

    pthread_mutex_lock(&u->lock);
    n = u->inflight;
    pthread_mutex_unlock(&u->lock);
    return n;
}

/* u->lock held: one CQE of slot idx.  1 with *out set when the bio is
 * finished; 0 when the rest was queued again (*resub). */
static int step_locked(struct vd_uring *u, unsigned idx, int res, bool *resub,
                       int *out)
{
    struct uslot *s = &u->slots[idx];
    struct vd_bio *bio = s->bio;

    if (res == -EINTR || res == -EAGAIN) {
        if (s->retries++ < MAX_RETRIES)
            goto again;
        *out = -EIO;
        return 1;
    }
    if (res < 0) {
        *out = res;
        return 1;
    }
    if (bio->op == VD_BIO_FLUSH) {
        *out = 0;
        return 1;
    }
    if (res == 0) {
        if (bio->op == VD_BIO_READ) { /* past the end of a short file */
            memset((char *)bio->buf + s->done, 0, bio->len - s->done);
            *out = 0;
        } else {
            *out = -EIO;
        }
        return 1;
    }
    s->done += (size_t)res;
    if (s->done >= bio->len) {
        *out = 0;
        return 1;
    }
again:
    if (prep_locked(u, idx) < 0) {
        *out = -EIO;
        return 1;
    }
    *resub = true;
    return 0;
}

/* Complete what u has finished; done callbacks run without u->lock. */
static void reap(struct vd_uring *u)
{
    for (;;) {
        struct io_uring_cqe *cqes[REAP_BATCH];
        struct vd_bio *fin[REAP_BATCH];
        int res[REAP_BATCH];
        unsigned n, nf = 0;
        bool resub = false;

        pthread_mutex_lock(&u->lock);
        n = io_uring_peek_batch_cqe(&u->ring, cqes, REAP_BATCH);
        for (unsigned i = 0; i < n; i++) {
            uint64_t data = io_uring_cqe_get_data64(cqes[i]);
            int out;
            if (data == 0 || data > RING_DEPTH || !u->slots[data - 1].bio)
                continue; /* a neutralised SQE's NOP */
            unsigned idx = (unsigned)data - 1;
            if (step_locked(u, idx, cqes[i]->res, &resub, &out)) {
                fin[nf] = u->slots[idx].bio;
                res[nf++] = out;
                slot_free_locked(u, idx);
            }
        }
        io_uring_cq_advance(&u->ring, n);
        if (resub && enter_locked(u) < 0)
            vd_log(VD_LOG_ERR, "io_uring: resubmitting a short request "
                               "failed (retried at the next submit)");
        pthread_mutex_unlock(&u->lock);
        for (unsigned i = 0; i < nf; i++)
            fin[i]->done(fin[i], res[i]);
        if (n < REAP_BATCH)
            break;
    }
}

/* g_lock held. */
static void reap_rings_locked(void)
{
    for (struct vd_uring *u = g_rings; u; u = u->next)
        reap(u);
}

/* The event loop's pass: the rings' completions (their done callbacks run
 * here, under g_lock), then the volume requests that ended (vol.c; their
 * callbacks run without g_lock, so they may submit again).  The eventfd
 * is read first, so that anything posted during the pass signals again. */
void vd_async_poll(void)
{
    uint64_t n;

    pthread_mutex_lock(&g_lock);
    if (g_efd >= 0)
        while (read(g_efd, &n, sizeof(n)) < 0 && errno == EINTR)
            ;
    reap_rings_locked();
    pthread_mutex_unlock(&g_lock);
    vd_vol_async_run();
}

static int g_local = -1; /* vd_async_local: -1 not read yet; atomic */

bool vd_async_local(void)
{
    int v = __atomic_load_n(&g_local, __ATOMIC_ACQUIRE);

    if (v < 0) {
        const char *e = getenv("VDLVM_ASYNC");
        v = e && !strcmp(e, "all");
        __atomic_store_n(&g_local, v, __ATOMIC_RELEASE);
    }
    return v;
}

void vd_async_set_local(bool on)
{
    __atomic_store_n(&g_local, on ? 1 : 0, __ATOMIC_RELEASE);
}

bool vd_async_external(void)
{
    return __atomic_load_n(&g_external, __ATOMIC_ACQUIRE);
}

void vd_async_signal(void)
{
    static const uint64_t one = 1;
    int fd = __atomic_load_n(&g_efd, __ATOMIC_ACQUIRE);

    if (fd >= 0)
        while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
}

void vd_async_set_external(bool on)
{
    pthread_mutex_lock(&g_lock);
    __atomic_store_n(&g_external, on, __ATOMIC_RELEASE);
    if (efd_get_locked() >= 0) {
        if (on)
            vd_async_signal(); /* a running reaper leaves */
        else if (g_rings)
            reaper_start_locked(g_efd);
    }
    pthread_mutex_unlock(&g_lock);
}

void vd_uring_close(struct vd_uring *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&g_lock);
    for (struct vd_uring **pp = &g_rings; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    /* only this thread sees u now */
    while (vd_uring_inflight(u)) {
        struct io_uring_cqe *cqe;
        pthread_mutex_lock(&u->lock);
        enter_locked(u);
        pthread_mutex_unlock(&u->lock);
        int w = io_uring_wait_cqe(&u->ring, &cqe);
        if (w < 0 && w != -EINTR)
            break;
        reap(u);
    }
    io_uring_queue_exit(&u->ring);
    pthread_mutex_destroy(&u->lock);
    free(u);
}
