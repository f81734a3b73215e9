/* vdlvm: Ceph RBD images as pool devices (librbd).
 *
 *   devices:
 *     - name: ceph0
 *       rbd: {pool: rbd, image: img1, conf: /etc/ceph/ceph.conf, id: admin}
 *       timeout: 10s        # optional, default 30 s
 *
 * Design
 * - One I/O context and one open image per device, on a librados cluster
 *   handle shared by every device of the same (conf, id, timeout) in the
 *   process (g_clusters below).  I/O goes through librbd's asynchronous API (rbd_aio_read,
 *   rbd_aio_write, rbd_aio_flush, rbd_aio_write_zeroes): the caller (a
 *   module worker, the pool's background thread) submits a request and
 *   sleeps on the request's condition variable; librbd's own finisher
 *   thread runs the completion callback, which wakes it.  No thread of
 *   ours is dedicated to the device and any number of requests are in
 *   flight (librbd splits them into object requests and sends them to
 *   the OSDs in parallel).
 * - Timeouts: rados_osd_op_timeout, rados_mon_op_timeout and
 *   client_mount_timeout are set from the device's `timeout:` (whole
 *   seconds, rounded up), so librbd fails an operation on a silent OSD or
 *   monitor with -ETIMEDOUT by itself.  As a second line, a caller waits
 *   at most timeout + GRACE_MS: past that it gives the request up
 *   (-ETIMEDOUT) and the request stays allocated until librbd completes
 *   it.  That is safe because librbd never touches the caller's buffer
 *   after we returned: reads land in a buffer the request owns (copied
 *   out on completion; a memcpy is small against a network round trip),
 *   and writes are copied by librbd when submitted (rbd_disable_zero_copy
 *   _writes, set here).  So nothing waits on a dead cluster for longer
 *   than the timeout plus the grace.
 * - The cluster coming back: librados reconnects by itself and requests
 *   succeed again on the same handle.  A device the pool marked failed is
 *   reopened by the pool's retry (vd_pool_retry_devices, pool/bg.c), which
 *   connects a new handle (bounded by client_mount_timeout).
 * - Durability: the RBD cache is off (rbd_cache = false), so a write that
 *   completed is on the OSDs' journals/stores; VD_IO_FUA needs nothing
 *   more, flush is rbd_aio_flush (cheap without a cache, kept for images
 *   opened by a librbd configured otherwise).
 * - Credentials: the keyring is found by librados through the conf file
 *   and the client id (client.ID); we never read, copy or log it.  Messages
 *   name the pool, the image, the conf file and the id only.
 * - Signals: librados starts its threads while we connect and open; all
 *   signals are blocked around that (they inherit the mask), so tgtd's
 *   SIGUSR2 never lands on a Ceph thread.
 *
 * Cluster handles live until exit
 *   A connected handle stays for the life of the process, in g_clusters,
 *   and the next open of the same cluster (the pool reopened, the device
 *   retried) reuses it: one handle per cluster and client, whatever the
 *   number of opens.  A handle whose rados_connect failed is shut down at
 *   once.  At exit: tgtd exits while a "vdlvm-close" thread may still be
 *   closing a pool (the module's destructor waits for it, but exit() runs
 *   the C++ static destructors of libceph-common and OpenSSL's cleanup
 *   before any .fini).  A Ceph call then reads freed objects: tgtd died in
 *   rados_shutdown (freed config map, boost::bad_get from a MonConnection)
 *   and in a messenger thread (OpenSSL already cleaned up), in test-rbd.sh
 *   and tests/bench/rbd.sh.  So the first connect registers an atexit
 *   handler (at_exit), which runs before those destructors (registered
 *   later, runs earlier): it waits, bounded, for the open devices to be
 *   closed and then shuts every handle down while librados is whole.
 *
 * Shared state
 * - g_clusters (list of struct rbd_cluster): protected by g_clusters_lock,
 *   which is never held across a call into librados; entries are added
 *   and never removed.  Two racing opens of one new cluster may both
 *   connect: the loser's handle is kept as well (it is only a spare).
 * - struct rbd_req: owned jointly by the submitting caller and librbd's
 *   callback (refs, atomic; the last one frees it).  done/ret are
 *   protected by rq->lock; the callback sets them and signals under the
 *   lock, the caller waits on them under the lock.
 * - struct rbd_bdev: immutable after open except the health fields
 *   (fail_since_ms, last_err), which are atomics written by any caller
 *   and read by get_state; a stale read only makes status one request
 *   late.
 * Asynchronous requests (submit, issue 14/19)
 *   submit (the bdev op, pool_int.h) starts rbd_aio_read/write/flush and
 *   returns; librbd's callback thread calls bio->done.  No thread of ours
 *   waits per request.  struct rbd_areq, one per bio:
 *   - refs (atomic): 3 at submit: librbd's callback's (dropped when it
 *     returns), the device's pending list's (dropped by whoever takes the
 *     request off the list, after its done returned) and submit's own
 *     (dropped when submit no longer touches it: the callback may run on
 *     another thread before rbd_aio_* has returned); the last put frees
 *     it.
 *   - Who calls done: exactly the thread that unlinks the request from
 *     rb->pending under rb->alock (linked: under alock).  That is librbd's
 *     callback normally, or the watchdog thread (rb->wd) when the request
 *     is still pending timeout + GRACE_MS after submit (-ETIMEDOUT: the
 *     second line behind librbd's own timeouts, as for pread).  The one
 *     that does not unlink it only drops its ref.  So done runs once.
 *   - Buffers after a timeout: a read lands in the request's own bounce
 *     buffer and is copied into bio->buf only by the thread that calls
 *     done (before it); a write's data is copied by librbd at submit
 *     (rbd_disable_zero_copy_writes).  So librbd completing a request
 *     after its done never touches the submitter's memory.
 *   - Never inside submit: if librbd calls back on the submitting thread
 *     inside rbd_aio_* (an immediate failure), the callback sees
 *     tl_submitting == this request, records the result and moves the
 *     request to rb->deferred; the watchdog calls done.  The watchdog also
 *     skips requests still being submitted (submitting, under alock).
 *   - Refused with -EAGAIN (nothing started): an empty or unaligned bio
 *     (not a multiple of block_size, the bdev contract) or one past the
 *     end, an op other than read/write/flush.
 *   - rbd_aio_* failing to start (callback never runs): the request is
 *     unlinked and freed, submit returns -EAGAIN (the synchronous fallback
 *     reports the error).
 *   - close: rbd_close waits for librbd's requests (their callbacks run),
 *     then the watchdog is stopped: it completes what is deferred and
 *     fails what librbd never called back (-ENOTCONN; none expected), so
 *     every done has returned before close returns.
 *   rb->alock protects pending, deferred, every areq's linked/submitting/
 *   result/next/prev, and wd_stop; it is never held across a librbd call
 *   or a done.
 *
 * Threads: pread/pwrite/flush/zero/get_state/submit are thread-safe; close
 * must not race with I/O (the pool closes a device only when it is idle).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "pool_int.h"

#define GRACE_MS 2000 /* beyond librbd's own timeouts */

struct rbd_cluster {
    struct rbd_cluster *next; /* g_clusters */
    char *conf, *id;
    uint32_t timeout_ms;
    rados_t handle; /* connected */
    char fsid[64];
};
static pthread_mutex_t g_clusters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rbd_cluster *g_clusters; /* under g_clusters_lock */
static bool g_atexit_set;              /* under g_clusters_lock */
static int g_open_devs;                /* atomic: devices not closed yet */

/* exit(): see "Cluster handles live until exit" above. */
static void at_exit(void)
{
    struct rbd_cluster *k;
    int64_t end = vd_now_ms() + 35000; /* a close flushes: 30 s + slack */

    while (__atomic_load_n(&g_open_devs, __ATOMIC_ACQUIRE) > 0 &&
           vd_now_ms() < end)
        usleep(10000);
    if (__atomic_load_n(&g_open_devs, __ATOMIC_ACQUIRE) > 0)
        return; /* still in use: leave librados alone */
    pthread_mutex_lock(&g_clusters_lock);
    k = g_clusters;
    g_clusters = NULL;
    pthread_mutex_unlock(&g_clusters_lock);
    while (k) {
        struct rbd_cluster *n = k->next;
        rados_shutdown(k->handle);
        free(k->conf);
        free(k->id);
        free(k);
        k = n;
    }
}

struct rbd_areq;

struct rbd_bdev {
    struct vd_bdev b;
    /* asynchronous requests (header: "Asynchronous requests") */
    pthread_mutex_t alock; /* protects the fields below and areq links */
    pthread_cond_t acond;  /* watchdog: deferred, stop, or a new head */
    struct rbd_areq *pending, *pending_tail; /* by deadline */
    struct rbd_areq *deferred;               /* done due, by the watchdog */
    bool wd_stop;
    pthread_t wd;
    bool wd_started; /* set at open, before any I/O */
    rados_t cluster; /* of g_clusters, not ours to shut down */
    rados_ioctx_t io;
    rbd_image_t image;
    uint32_t timeout_ms;
    char fsid[64];
    char what[160];        /* "rbd:POOL/IMAGE" for messages */
    int64_t fail_since_ms; /* atomic: 0 while healthy */
    int last_err;          /* atomic: errno of the last failure */
    bool counted;          /* in g_open_devs */
};

struct rbd_req {
    pthread_mutex_t lock; /* protects done, ret */
    pthread_cond_t cond;  /* done became true */
    int refs;             /* atomic: caller + callback */
    bool done;
    ssize_t ret;
    void *bounce; /* read data, owned by the request */
};

static void req_put(struct rbd_req *rq)
{
    if (__atomic_sub_fetch(&rq->refs, 1, __ATOMIC_ACQ_REL))
        return;
    pthread_mutex_destroy(&rq->lock);
    pthread_cond_destroy(&rq->cond);
    free(rq->bounce);
    free(rq);
}

/* librbd's finisher thread. */
static void req_done(rbd_completion_t c, void *arg)
{
    struct rbd_req *rq = arg;
    ssize_t r = rbd_aio_get_return_value(c);

    rbd_aio_release(c);
    pthread_mutex_lock(&rq->lock);
    rq->ret = r;
    rq->done = true;
    pthread_cond_signal(&rq->cond);
    pthread_mutex_unlock(&rq->lock);
    req_put(rq);
}

static struct rbd_req *req_new(size_t bounce_len)
{
    struct rbd_req *rq = calloc(1, sizeof(*rq));

    if (!rq)
        return NULL;
    if (bounce_len && !(rq->bounce = malloc(bounce_len))) {
        free(rq);
        return NULL;
    }
    pthread_mutex_init(&rq->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rq->cond, &ca);
    pthread_condattr_destroy(&ca);
    rq->refs = 2;
    return rq;
}

static void note_result(struct rbd_bdev *rb, int r)
{
    if (r >= 0) {
        if (__atomic_load_n(&rb->fail_since_ms, __ATOMIC_RELAXED))
            __atomic_store_n(&rb->fail_since_ms, 0, __ATOMIC_RELAXED);
        return;
    }
    int64_t zero = 0;
    __atomic_store_n(&rb->last_err, -r, __ATOMIC_RELAXED);
    __atomic_compare_exchange_n(&rb->fail_since_ms, &zero, vd_now_ms(), false,
                                __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

enum op { OP_READ, OP_WRITE, OP_FLUSH, OP_ZERO };

/* ---- asynchronous requests (submit) -------------------------------------- */
struct rbd_areq {
    struct rbd_bdev *rb;
    struct vd_bio *bio;
    void *bounce;      /* read data, owned by the request */
    int refs;          /* atomic: librbd's callback + the pending list */
    uint64_t deadline; /* monotonic ms: the watchdog fails it then */
    /* under rb->alock */
    bool linked;     /* on rb->pending: done not called yet */
    bool submitting; /* inside rbd_aio_*: the watchdog leaves it */
    ssize_t result;  /* deferred: librbd's return value */
    struct rbd_areq *prev, *next;
};

/* The request whose rbd_aio_* call this thread is inside (header). */
static __thread struct rbd_areq *tl_submitting;

static void areq_put(struct rbd_areq *aq)
{
    if (__atomic_sub_fetch(&aq->refs, 1, __ATOMIC_ACQ_REL))
        return;
    free(aq->bounce);
    free(aq);
}

/* under alock */
static void areq_unlink(struct rbd_bdev *rb, struct rbd_areq *aq)
{
    if (aq->prev)
        aq->prev->next = aq->next;
    else
        rb->pending = aq->next;
    if (aq->next)
        aq->next->prev = aq->prev;
    else
        rb->pending_tail = aq->prev;
    aq->prev = aq->next = NULL;
    aq->linked = false;
}

/* Call done (the caller unlinked aq) and drop the list's ref. */
/* Submitted requests in flight in the process (atomics), capped below
 * librados' Objecter budget (objecter_inflight_ops 1024,
 * objecter_inflight_op_bytes 100 MiB, per cluster handle), whose throttle
 * would block the submitter: tgtd's main thread must never wait there.
 * Past the cap submit says -EAGAIN and the workers take the command. */
#define ASYNC_MAX_OPS   256
#define ASYNC_MAX_BYTES (64ull << 20)
static unsigned g_async_ops;
static uint64_t g_async_bytes;

static bool async_take(size_t len)
{
    unsigned n = __atomic_add_fetch(&g_async_ops, 1, __ATOMIC_RELAXED);
    uint64_t b = __atomic_add_fetch(&g_async_bytes, len, __ATOMIC_RELAXED);

    if (n <= ASYNC_MAX_OPS && b <= ASYNC_MAX_BYTES)
        return true;
    __atomic_sub_fetch(&g_async_ops, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&g_async_bytes, len, __ATOMIC_RELAXED);
    return false;
}

static void async_give(size_t len)
{
    __atomic_sub_fetch(&g_async_ops, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&g_async_bytes, len, __ATOMIC_RELAXED);
}

static void areq_finish(struct rbd_areq *aq, ssize_t r)
{
    struct vd_bio *bio = aq->bio;
    int err = r < 0 ? (int)r : 0;

    async_give(bio->len);

    if (err == 0 && bio->op == VD_BIO_READ)
        memcpy(bio->buf, aq->bounce, bio->len);
    note_result(aq->rb, err);
    bio->done(bio, err);
    areq_put(aq);
}

/* librbd's callback thread (or the submitting thread, inside rbd_aio_*). */
static void areq_cb(rbd_completion_t c, void *arg)
{
    struct rbd_areq *aq = arg;
    struct rbd_bdev *rb = aq->rb;
    ssize_t r = rbd_aio_get_return_value(c);
    bool mine;

    rbd_aio_release(c);
    pthread_mutex_lock(&rb->alock);
    mine = aq->linked;
    if (mine) {
        areq_unlink(rb, aq);
        if (tl_submitting == aq) { /* never done inside submit */
            aq->result = r;
            aq->next = rb->deferred;
            rb->deferred = aq;
            pthread_cond_signal(&rb->acond);
            mine = false;
        }
    }
    pthread_mutex_unlock(&rb->alock);
    if (mine)
        areq_finish(aq, r);
    areq_put(aq); /* the callback's ref */
}

/* The watchdog: deferred completions, and requests past their deadline. */
static void *watchdog(void *arg)
{
    struct rbd_bdev *rb = arg;

    pthread_mutex_lock(&rb->alock);
    for (;;) {
        struct rbd_areq *done = rb->deferred, *late = NULL, **tail = &late;
        uint64_t now = (uint64_t)vd_now_ms();
        bool stop = rb->wd_stop;

        rb->deferred = NULL;
        for (struct rbd_areq *aq = rb->pending, *n; aq; aq = n) {
            n = aq->next;
            if (!stop && aq->deadline > now)
                break; /* sorted by deadline */
            if (aq->submitting && !stop)
                continue;
            areq_unlink(rb, aq);
            *tail = aq;
            tail = &aq->next;
        }
        if (done || late) {
            pthread_mutex_unlock(&rb->alock);
            while (done) {
                struct rbd_areq *n = done->next;
                areq_finish(done, done->result);
                done = n;
            }
            while (late) {
                struct rbd_areq *n = late->next;
                vd_log(VD_LOG_DEBUG,
                       "%s: a request got no answer from librbd within "
                       "%u ms (failed: -ETIMEDOUT)",
                       rb->what, rb->timeout_ms + GRACE_MS);
                areq_finish(late, stop ? -ENOTCONN : -ETIMEDOUT);
                late = n;
            }
            pthread_mutex_lock(&rb->alock);
            continue;
        }
        if (stop)
            break;
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        uint64_t wait_ms = 1000;
        if (rb->pending && rb->pending->deadline > now &&
            rb->pending->deadline - now < wait_ms)
            wait_ms = rb->pending->deadline - now + 1;
        uint64_t ns = (uint64_t)dl.tv_nsec + wait_ms * 1000000ull;
        dl.tv_sec += (time_t)(ns / 1000000000ull);
        dl.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&rb->acond, &rb->alock, &dl);
    }
    pthread_mutex_unlock(&rb->alock);
    return NULL;
}

static int rbdev_submit(struct vd_bdev *b, struct vd_bio *bio)
{
    struct rbd_bdev *rb = (struct rbd_bdev *)b;
    struct rbd_areq *aq;
    rbd_completion_t c;
    int r;

    if (bio->op != VD_BIO_READ && bio->op != VD_BIO_WRITE &&
        bio->op != VD_BIO_FLUSH)
        return -EAGAIN;
    if (bio->op != VD_BIO_FLUSH &&
        (bio->len == 0 || bio->off % rb->b.block_size ||
         bio->len % rb->b.block_size || bio->off > rb->b.size ||
         bio->len > rb->b.size - bio->off))
        return -EAGAIN;
    if (!async_take(bio->len))
        return -EAGAIN;
    aq = calloc(1, sizeof(*aq));
    if (!aq) {
        async_give(bio->len);
        return -EAGAIN;
    }
    if (bio->op == VD_BIO_READ && !(aq->bounce = malloc(bio->len))) {
        free(aq);
        async_give(bio->len);
        return -EAGAIN;
    }
    aq->rb = rb;
    aq->bio = bio;
    aq->refs = 3; /* librbd's callback, the pending list, this call */
    if (rbd_aio_create_completion(aq, areq_cb, &c) < 0) {
        free(aq->bounce);
        free(aq);
        async_give(bio->len);
        return -EAGAIN;
    }
    pthread_mutex_lock(&rb->alock);
    /* the deadline under the lock keeps the list sorted */
    aq->deadline = (uint64_t)vd_now_ms() + rb->timeout_ms + GRACE_MS;
    aq->linked = aq->submitting = true;
    aq->prev = rb->pending_tail;
    if (rb->pending_tail)
        rb->pending_tail->next = aq;
    else
        rb->pending = aq;
    rb->pending_tail = aq;
    pthread_mutex_unlock(&rb->alock);

    tl_submitting = aq;
    switch (bio->op) {
    case VD_BIO_READ:
        r = rbd_aio_read(rb->image, bio->off, bio->len, aq->bounce, c);
        break;
    case VD_BIO_WRITE:
        /* no cache: a completed write is durable (VD_IO_FUA too) */
        r = rbd_aio_write(rb->image, bio->off, bio->len, bio->buf, c);
        break;
    default:
        r = rbd_aio_flush(rb->image, c);
        break;
    }
    tl_submitting = NULL;

    pthread_mutex_lock(&rb->alock);
    if (r < 0 && aq->linked) { /* not started: the callback never runs */
        areq_unlink(rb, aq);
        pthread_mutex_unlock(&rb->alock);
        rbd_aio_release(c);
        free(aq->bounce);
        free(aq);
        async_give(bio->len);
        return -EAGAIN;
    }
    /* Started (or failed through the callback already: deferred). */
    aq->submitting = false;
    if (aq == rb->pending)
        pthread_cond_signal(&rb->acond); /* a new head: a new deadline */
    pthread_mutex_unlock(&rb->alock);
    areq_put(aq); /* submit's ref */
    return 0;
}

/* Submit one operation and wait for it, at most timeout + GRACE_MS.
 * Returns 0 or a negative errno. */
static int rbdev_io(struct rbd_bdev *rb, enum op op, void *buf, size_t len,
                    uint64_t off)
{
    struct rbd_req *rq = req_new(op == OP_READ ? len : 0);
    rbd_completion_t c;
    struct timespec dl;
    int r;

    if (!rq)
        return -ENOMEM;
    r = rbd_aio_create_completion(rq, req_done, &c);
    if (r < 0) {
        rq->refs = 1;
        req_put(rq);
        return r;
    }
    switch (op) {
    case OP_READ:
        r = rbd_aio_read(rb->image, off, len, rq->bounce, c);
        break;
    case OP_WRITE:
        r = rbd_aio_write(rb->image, off, len, buf, c);
        break;
    case OP_FLUSH:
        r = rbd_aio_flush(rb->image, c);
        break;
    case OP_ZERO:
        r = rbd_aio_write_zeroes(rb->image, off, len, c, 0, 0);
        break;
    }
    if (r < 0) { /* not started: the callback never runs */
        rbd_aio_release(c);
        rq->refs = 1;
        req_put(rq);
        note_result(rb, r);
        return r;
    }
    clock_gettime(CLOCK_MONOTONIC, &dl);
    uint64_t ns = (uint64_t)dl.tv_nsec +
                  ((uint64_t)rb->timeout_ms + GRACE_MS) * 1000000ull;
    dl.tv_sec += (time_t)(ns / 1000000000ull);
    dl.tv_nsec = (long)(ns % 1000000000ull);
    pthread_mutex_lock(&rq->lock);
    while (!rq->done)
        if (pthread_cond_timedwait(&rq->cond, &rq->lock, &dl) == ETIMEDOUT)
            break;
    if (rq->done) {
        r = rq->ret < 0 ? (int)rq->ret : 0;
        if (op == OP_READ && r == 0)
            memcpy(buf, rq->bounce, len);
    } else {
        r = -ETIMEDOUT; /* librbd still owns rq (and its bounce buffer) */
    }
    pthread_mutex_unlock(&rq->lock);
    req_put(rq);
    note_result(rb, r);
    return r;
}

static int rbdev_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    return rbdev_io((struct rbd_bdev *)b, OP_READ, buf, len, off);
}

static int rbdev_pwrite(struct vd_bdev *b, const void *buf, size_t len,
                        uint64_t off, unsigned flags)
{
    (void)flags; /* no cache: a completed write is durable (FUA) */
    if (flags & VD_IO_NOWAIT)
        return -EAGAIN;
    return rbdev_io((struct rbd_bdev *)b, OP_WRITE, (void *)buf, len, off);
}

static int rbdev_flush(struct vd_bdev *b)
{
    return rbdev_io((struct rbd_bdev *)b, OP_FLUSH, NULL, 0, 0);
}

static int rbdev_zero(struct vd_bdev *b, uint64_t off, uint64_t len)
{
    int r = 0;

    /* size_t len in librbd: keep each call well inside it */
    while (r == 0 && len) {
        uint64_t n = len < (1ull << 30) ? len : (1ull << 30);
        r = rbdev_io((struct rbd_bdev *)b, OP_ZERO, NULL, n, off);
        off += n;
        len -= n;
    }
    return r == -EINVAL || r == -ENOSYS ? -EOPNOTSUPP : r;
}

static int rbdev_get_state(struct vd_bdev *b, char *buf, size_t len)
{
    struct rbd_bdev *rb = (struct rbd_bdev *)b;
    int64_t since = __atomic_load_n(&rb->fail_since_ms, __ATOMIC_RELAXED);

    if (!since) {
        snprintf(buf, len, "connected to cluster %s", rb->fsid);
        return 1;
    }
    snprintf(buf, len, "failing for %llds: %s (librbd retries by itself)",
             (long long)((vd_now_ms() - since) / 1000),
             strerror(__atomic_load_n(&rb->last_err, __ATOMIC_RELAXED)));
    return 0;
}

static void rbdev_close(struct vd_bdev *b)
{
    struct rbd_bdev *rb = (struct rbd_bdev *)b;

    if (!rb)
        return;
    /* rbd_close waits for requests we gave up on (librbd fails them
     * within its timeouts); the cluster handle stays (header comment) */
    if (rb->image)
        rbd_close(rb->image);
    if (rb->wd_started) { /* after rbd_close: no callback is left */
        pthread_mutex_lock(&rb->alock);
        rb->wd_stop = true;
        pthread_cond_signal(&rb->acond);
        pthread_mutex_unlock(&rb->alock);
        pthread_join(rb->wd, NULL);
    }
    pthread_mutex_destroy(&rb->alock);
    pthread_cond_destroy(&rb->acond);
    if (rb->io)
        rados_ioctx_destroy(rb->io);
    if (rb->counted)
        __atomic_sub_fetch(&g_open_devs, 1, __ATOMIC_RELEASE);
    free(rb);
}

static const struct vd_bdev_ops rbdev_ops = {
    .kind = "rbd",
    .pread = rbdev_pread,
    .pwrite = rbdev_pwrite,
    .flush = rbdev_flush,
    .close = rbdev_close,
    .get_state = rbdev_get_state,
    .zero = rbdev_zero,
    .submit = rbdev_submit,
};

static int set_opt(struct rbd_bdev *rb, const char *k, const char *v, char *msg,
                   size_t msglen)
{
    int r = rados_conf_set(rb->cluster, k, v);
    if (r < 0)
        snprintf(msg, msglen, "%s: setting %s: %s", rb->what, k, strerror(-r));
    return r;
}

static struct rbd_cluster *cluster_find(const char *conf, const char *id,
                                        uint32_t timeout_ms)
{
    struct rbd_cluster *k;

    pthread_mutex_lock(&g_clusters_lock);
    for (k = g_clusters; k; k = k->next)
        if (!strcmp(k->conf, conf) && !strcmp(k->id, id) &&
            k->timeout_ms == timeout_ms)
            break;
    pthread_mutex_unlock(&g_clusters_lock);
    return k;
}

/* A connected handle for (conf, id, timeout): an existing one, or a new
 * one (kept in g_clusters).  Runs with every signal blocked (header). */
static int cluster_get(struct rbd_bdev *rb, const struct vd_conf_dev *c,
                       char *msg, size_t msglen)
{
    const char *conf = c->rbd_conf ? c->rbd_conf : "/etc/ceph/ceph.conf";
    const char *id = c->rbd_id ? c->rbd_id : "admin";
    struct rbd_cluster *k = cluster_find(conf, id, rb->timeout_ms);
    char secs[32];
    int r;

    __atomic_add_fetch(&g_open_devs, 1, __ATOMIC_ACQ_REL);
    rb->counted = true; /* before the handle is used: at_exit waits */
    if (k) {
        rb->cluster = k->handle;
        snprintf(rb->fsid, sizeof(rb->fsid), "%s", k->fsid);
        return 0;
    }
    r = rados_create(&rb->cluster, id);
    if (r < 0) {
        rb->cluster = NULL;
        snprintf(msg, msglen, "%s: rados_create (id %s): %s", rb->what,
                 c->rbd_id ? c->rbd_id : "admin", strerror(-r));
        return r;
    }
    r = rados_conf_read_file(rb->cluster, conf);
    if (r < 0) {
        snprintf(msg, msglen, "%s: reading %s: %s", rb->what, conf,
                 strerror(-r));
        goto fail;
    }
    snprintf(secs, sizeof(secs), "%u", (rb->timeout_ms + 999) / 1000);
    if ((r = set_opt(rb, "rados_osd_op_timeout", secs, msg, msglen)) < 0 ||
        (r = set_opt(rb, "rados_mon_op_timeout", secs, msg, msglen)) < 0 ||
        (r = set_opt(rb, "client_mount_timeout", secs, msg, msglen)) < 0 ||
        (r = set_opt(rb, "rbd_cache", "false", msg, msglen)) < 0 ||
        (r = set_opt(rb, "rbd_disable_zero_copy_writes", "true", msg, msglen)) <
            0 ||
        (r = set_opt(rb, "log_to_stderr", "false", msg, msglen)) < 0 ||
        (r = set_opt(rb, "err_to_stderr", "false", msg, msglen)) < 0)
        goto fail;
    r = rados_connect(rb->cluster);
    if (r < 0) {
        snprintf(msg, msglen,
                 "%s: cannot connect to the cluster of %s as client.%s "
                 "within %us: %s",
                 rb->what, c->rbd_conf ? c->rbd_conf : "ceph.conf",
                 c->rbd_id ? c->rbd_id : "admin", (rb->timeout_ms + 999) / 1000,
                 strerror(-r));
        goto fail;
    }
    if (rados_cluster_fsid(rb->cluster, rb->fsid, sizeof(rb->fsid)) < 0)
        snprintf(rb->fsid, sizeof(rb->fsid), "?");
    k = calloc(1, sizeof(*k));
    if (k && (k->conf = strdup(conf)) && (k->id = strdup(id))) {
        k->timeout_ms = rb->timeout_ms;
        k->handle = rb->cluster;
        snprintf(k->fsid, sizeof(k->fsid), "%s", rb->fsid);
        pthread_mutex_lock(&g_clusters_lock);
        k->next = g_clusters;
        g_clusters = k;
        if (!g_atexit_set)
            g_atexit_set = atexit(at_exit) == 0;
        pthread_mutex_unlock(&g_clusters_lock);
    } else if (k) { /* out of memory: the handle is not found again */
        free(k->conf);
        free(k);
    }
    return 0;
fail:
    /* never connected (or connecting failed): safe to shut down */
    rados_shutdown(rb->cluster);
    rb->cluster = NULL;
    return r;
}

/* Connect and open; runs with every signal blocked (see header). */
static int open_locked(struct rbd_bdev *rb, const struct vd_conf_dev *c,
                       char *msg, size_t msglen)
{
    uint64_t size;
    int r = cluster_get(rb, c, msg, msglen);

    if (r < 0)
        return r;
    r = rados_ioctx_create(rb->cluster, c->rbd_pool, &rb->io);
    if (r < 0) {
        rb->io = NULL;
        snprintf(msg, msglen, "%s: no pool '%s' in cluster %s: %s", rb->what,
                 c->rbd_pool, rb->fsid, strerror(-r));
        return r;
    }
    r = rbd_open(rb->io, c->rbd_image, &rb->image, NULL);
    if (r < 0) {
        rb->image = NULL;
        snprintf(msg, msglen, "%s: cannot open image '%s' in pool '%s': %s%s",
                 rb->what, c->rbd_image, c->rbd_pool, strerror(-r),
                 r == -ENOENT ? "; create it first (rbd create)" : "");
        return r;
    }
    r = rbd_get_size(rb->image, &size);
    if (r < 0) {
        snprintf(msg, msglen, "%s: size: %s", rb->what, strerror(-r));
        return r;
    }
    rb->b.size = size;
    return 0;
}

int vd_bdev_rbd_open(const struct vd_conf_dev *c, struct vd_bdev **out,
                     char *msg, size_t msglen)
{
    struct rbd_bdev *rb;
    sigset_t all, old;
    int r;

    if (!c->rbd_pool || !c->rbd_image) {
        snprintf(msg, msglen, "device '%s': rbd needs pool and image",
                 c->name ? c->name : "?");
        return -EINVAL;
    }
    rb = calloc(1, sizeof(*rb));
    if (!rb)
        return -ENOMEM;
    rb->b.ops = &rbdev_ops;
    rb->b.block_size = 512;
    pthread_mutex_init(&rb->alock, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&rb->acond, &ca);
        pthread_condattr_destroy(&ca);
    }
    rb->timeout_ms = c->timeout_ms ? c->timeout_ms : 30000u;
    snprintf(rb->what, sizeof(rb->what), "rbd:%s/%s", c->rbd_pool,
             c->rbd_image);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = open_locked(rb, c, msg, msglen);
    if (r == 0) { /* the watchdog inherits the blocked mask */
        r = -pthread_create(&rb->wd, NULL, watchdog, rb);
        if (r < 0)
            snprintf(msg, msglen, "%s: cannot start a thread: %s", rb->what,
                     strerror(-r));
        else
            rb->wd_started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        rbdev_close(&rb->b);
        return r;
    }
    *out = &rb->b;
    return 0;
}
