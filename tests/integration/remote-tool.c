/* Test driver for remote devices, built by the integration tests that use
 * it (cc -I. ... build/libvdlvm.a):
 *
 *   remote-tool stale-write URL TIMEOUT_MS SHIMDIR
 *       defect 5 (test-remote-stale-write.sh): with the peer's shim holding
 *       writes of 'O' blocks while SHIMDIR/hold exists, write 'O' (times
 *       out), then write 'N' to the same blocks until it succeeds, releasing
 *       the held write meanwhile; prints what happened as key=value lines.
 *   remote-tool takeover POOL.yaml
 *       vd_pool_takeover (until `vdlvm pool takeover` exists).
 *   remote-tool open URL TIMEOUT_MS
 *       open the device (login + reservation) and close it: exit 0, or 1
 *       with the message.
 *   remote-tool zero URL OFF LEN
 *       fill [OFF-1MiB, OFF+LEN+1MiB) with 0xa5, zero [OFF, OFF+LEN) with the
 *       driver's zero op, read back: zeroes inside, 0xa5 around; exit 0 if
 *       so (test-remote-zero.sh).
 *   remote-tool submit URL TIMEOUT_MS MODE [DIR | QD SECONDS]
 *       the asynchronous op (bdev submit, issue 14; test-remote-submit.sh).
 *       Every mode checks that each bio's done runs exactly once, never
 *       inside submit on the submitting thread, and prints key=value lines.
 *       check: 64 writes in flight (sizes 4 KiB .. 2 MiB: split at the
 *         target's limit; some FUA) while another thread does synchronous
 *         writes and reads of its own region, a flush bio, then 64 reads
 *         in flight: the data read back equals what was written; unaligned
 *         and empty bios are refused with -EAGAIN.
 *       silent DIR: 4 KiB random writes at queue depth 32; touches
 *         DIR/loaded after 1 s, DIR/failed at the first failed bio (the
 *         script silences the peer after loaded and restores it after
 *         failed), DIR/back at the first success after that; prints the
 *         longest submit-to-done time (must stay within the timeout plus
 *         SUBMIT_SLACK_MS, default 1500).
 *       close DIR: opens, touches DIR/opened, waits for DIR/go, submits 64
 *         1 MiB writes and closes at once: every done has run, once,
 *         when close returns (the peer may be silent by then).
 *       bench QD SECONDS: 4 KiB random writes at queue depth QD through
 *         submit, then from QD threads through pwrite; prints IOPS of each.
 *       Built with -DREMOTE_TOOL_RBD (and -lrbd -lrados), URL may also be
 *       rbd:CONF:POOL/IMAGE (test-rbd.sh): the same modes on an RBD image.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool_int.h"

#define OFF (1u << 20)
#define LEN (64u << 10)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int exists(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void log_fn(int level, const char *msg)
{
    fprintf(stderr, "remote-tool: %s%s\n", level == VD_LOG_ERR ? "error: " : "",
            msg);
}

static int open_dev(const char *url, const char *ms, struct vd_bdev **b)
{
    struct vd_conf_dev c = {0};
    char msg[512] = "";
    int r;

    c.name = "r0";
    c.timeout_ms = (uint32_t)atoi(ms);
#ifdef REMOTE_TOOL_RBD
    /* rbd:CONF:POOL/IMAGE (built with -DREMOTE_TOOL_RBD -lrbd -lrados) */
    if (!strncmp(url, "rbd:", 4)) {
        static char spec[4096];
        snprintf(spec, sizeof(spec), "%s", url + 4);
        char *pool = strchr(spec, ':'), *image;
        if (!pool || !(image = strchr(pool, '/'))) {
            fprintf(stderr, "remote-tool: use rbd:CONF:POOL/IMAGE\n");
            return -EINVAL;
        }
        *pool++ = 0;
        *image++ = 0;
        c.rbd_conf = spec;
        c.rbd_pool = pool;
        c.rbd_image = image;
        r = vd_bdev_rbd_open(&c, b, msg, sizeof(msg));
        if (r < 0)
            fprintf(stderr, "remote-tool: open %s: %s (%s)\n", url, msg,
                    strerror(-r));
        return r;
    }
#endif
    c.iscsi_url = (char *)url;
    r = vd_bdev_iscsi_open(&c, b, msg, sizeof(msg));
    if (r < 0)
        fprintf(stderr, "remote-tool: open %s: %s (%s)\n", url, msg,
                strerror(-r));
    return r;
}

static int stale_write(const char *url, const char *ms, const char *dir)
{
    static unsigned char old[LEN], new[LEN], back[LEN];
    struct vd_bdev *b;
    char hold[4096];
    double t0, t_old;
    int r, fd, attempts = 0, new_before_release = 0, new_ok = 0;
    uint32_t timeout = (uint32_t)atoi(ms);

    memset(old, 'O', sizeof(old));
    memset(new, 'N', sizeof(new));
    if (open_dev(url, ms, &b) < 0)
        return 2;
    snprintf(hold, sizeof(hold), "%s/hold", dir);
    fd = open(hold, O_CREAT | O_WRONLY, 0644);
    if (fd < 0) {
        perror(hold);
        return 2;
    }
    close(fd);

    t0 = now_s();
    r = b->ops->pwrite(b, old, LEN, OFF, 0);
    t_old = now_s() - t0;
    printf("old_write=%d old_write_s=%.2f old_held=%d\n", r, t_old,
           exists(dir, "held"));
    if (r == 0 || !exists(dir, "held")) {
        fprintf(stderr, "remote-tool: the old write was not held by the peer\n");
        return 2;
    }
    /* The newer write, retried while the device reconnects.  Give the
     * device several timeouts' worth to come back while the old write is
     * still held on the peer. */
    double until = now_s() + 4.0 * timeout / 1000 + 3;
    while (now_s() < until) {
        attempts++;
        if (b->ops->pwrite(b, new, LEN, OFF, 0) == 0) {
            new_before_release = 1;
            new_ok = 1;
            break;
        }
        usleep(100000);
    }
    printf("new_before_release=%d attempts=%d\n", new_before_release, attempts);
    /* Release the old write and wait for it to land on the peer. */
    unlink(hold);
    until = now_s() + 30;
    while (!exists(dir, "landed") && now_s() < until)
        usleep(20000);
    printf("old_landed=%d\n", exists(dir, "landed"));
    until = now_s() + 60;
    while (!new_ok && now_s() < until) {
        attempts++;
        if (b->ops->pwrite(b, new, LEN, OFF, 0) == 0)
            new_ok = 1;
        else
            usleep(100000);
    }
    printf("new_write_ok=%d attempts=%d\n", new_ok, attempts);
    r = b->ops->pread(b, back, LEN, OFF);
    printf("read_back=%d holds=%s\n", r,
           r ? "?" : !memcmp(back, new, LEN) ? "new"
                   : !memcmp(back, old, LEN) ? "old" : "mixed");
    b->ops->close(b);
    return 0;
}

static int zero(const char *url, uint64_t off, uint64_t len)
{
    struct vd_bdev *b;
    uint64_t lo = off - (1u << 20), hi = off + len + (1u << 20);
    size_t chunk = 4u << 20;
    unsigned char *buf = malloc(chunk);
    int r, bad = 0;

    if (!buf || open_dev(url, "5000", &b) < 0)
        return 2;
    if (!b->ops->zero) {
        fprintf(stderr, "remote-tool: the iscsi driver has no zero op\n");
        return 1;
    }
    memset(buf, 0xa5, chunk);
    for (uint64_t o = lo; o < hi; o += chunk) {
        size_t n = hi - o < chunk ? (size_t)(hi - o) : chunk;
        if ((r = b->ops->pwrite(b, buf, n, o, 0)) < 0) {
            fprintf(stderr, "remote-tool: fill: %s\n", strerror(-r));
            return 2;
        }
    }
    double t0 = now_s();
    r = b->ops->zero(b, off, len);
    printf("zero=%d zero_s=%.3f\n", r, now_s() - t0);
    if (r < 0)
        return 1;
    for (uint64_t o = lo; o < hi; o += chunk) {
        size_t n = hi - o < chunk ? (size_t)(hi - o) : chunk;
        if ((r = b->ops->pread(b, buf, n, o)) < 0) {
            fprintf(stderr, "remote-tool: read back: %s\n", strerror(-r));
            return 2;
        }
        for (size_t i = 0; i < n; i++) {
            int want = o + i >= off && o + i < off + len ? 0 : 0xa5;
            if (buf[i] != want) {
                if (!bad++)
                    fprintf(stderr, "remote-tool: byte %llu is 0x%02x, not "
                            "0x%02x\n", (unsigned long long)(o + i), buf[i],
                            want);
            }
        }
    }
    printf("bad_bytes=%d\n", bad);
    b->ops->close(b);
    free(buf);
    return bad ? 1 : 0;
}

/* ---- submit ---------------------------------------------------------- */
#define NB_MAX 256

struct sbio {
    struct vd_bio bio;
    int idx;
    double t_submit;
};

static struct {
    pthread_mutex_t lock; /* protects the fields below */
    pthread_cond_t cond;
    int ndone[NB_MAX];  /* done calls per bio */
    int result[NB_MAX];
    double lat_max;     /* longest submit-to-done, s */
    int ring[NB_MAX];   /* completed bios not yet looked at */
    int rhead, rcount;
    int violations;     /* done twice, or inside submit */
} S = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };

static struct sbio g_bios[NB_MAX];
static pthread_t g_main;
static _Thread_local int tl_in_submit;

static void s_done(struct vd_bio *bio, int result)
{
    struct sbio *sb = (struct sbio *)bio;
    double lat = now_s() - sb->t_submit;

    pthread_mutex_lock(&S.lock);
    if (tl_in_submit || S.ndone[sb->idx] != 0) {
        S.violations++;
        fprintf(stderr, "remote-tool: bio %d: done %s\n", sb->idx,
                tl_in_submit ? "inside submit" : "called twice");
    }
    S.ndone[sb->idx]++;
    S.result[sb->idx] = result;
    if (lat > S.lat_max)
        S.lat_max = lat;
    S.ring[(S.rhead + S.rcount) % NB_MAX] = sb->idx;
    S.rcount++;
    pthread_cond_broadcast(&S.cond);
    pthread_mutex_unlock(&S.lock);
}

static int s_submit(struct vd_bdev *b, int idx, int op, void *buf, size_t len,
                    uint64_t off, unsigned flags)
{
    struct sbio *sb = &g_bios[idx];
    int r;

    pthread_mutex_lock(&S.lock);
    S.ndone[idx] = 0;
    S.result[idx] = 1;
    pthread_mutex_unlock(&S.lock);
    sb->idx = idx;
    sb->bio = (struct vd_bio){ .op = op, .flags = flags, .buf = buf,
                               .len = len, .off = off, .done = s_done };
    sb->t_submit = now_s();
    tl_in_submit = 1;
    r = b->ops->submit(b, &sb->bio);
    tl_in_submit = 0;
    if (r != 0) {
        pthread_mutex_lock(&S.lock);
        S.ndone[idx] = -1; /* not started */
        pthread_mutex_unlock(&S.lock);
    }
    return r;
}

/* Wait until every started bio in [0, n) is done, at most secs. */
static int s_wait_all(int n, double secs)
{
    double until = now_s() + secs;
    int left;

    pthread_mutex_lock(&S.lock);
    for (;;) {
        left = 0;
        for (int i = 0; i < n; i++)
            left += S.ndone[i] == 0;
        if (!left || now_s() > until)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&S.cond, &S.lock, &ts);
    }
    S.rcount = 0;
    pthread_mutex_unlock(&S.lock);
    return left;
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
}

struct sync_arg {
    struct vd_bdev *b;
    atomic_int stop;
    int errors, rounds;
};

/* A synchronous caller on the same device, its own region. */
static void *sync_writer(void *arg)
{
    struct sync_arg *a = arg;
    static unsigned char w[65536], r[65536];
    uint64_t base = 136ull << 20;

    for (unsigned i = 0; !atomic_load(&a->stop) && i < 10000; i++) {
        uint64_t off = base + (uint64_t)(i % 64) * sizeof(w);
        fill(w, sizeof(w), 1000 + i);
        if (a->b->ops->pwrite(a->b, w, sizeof(w), off, 0) ||
            a->b->ops->pread(a->b, r, sizeof(r), off) ||
            memcmp(w, r, sizeof(w)))
            a->errors++;
        a->rounds++;
    }
    return NULL;
}

static int submit_check(struct vd_bdev *b)
{
    const int n = 64;
    const uint64_t stride = 2u << 20;
    static unsigned char *wbuf[64], *rbuf[64];
    size_t len[64];
    struct sync_arg sa = { .b = b };
    pthread_t th;
    int r, bad = 0, errs = 0, left;
    static unsigned char blk[4096];

    /* bios 200, 201: refused (if started anyway, done finds a real bio) */
    int r_odd = s_submit(b, 200, VD_BIO_WRITE, blk, 4096, 100, 0);
    int r_empty = s_submit(b, 201, VD_BIO_WRITE, blk, 0, 0, 0);
    printf("unaligned=%d empty=%d\n", r_odd, r_empty);
    if (r_odd != -EAGAIN || r_empty != -EAGAIN)
        bad++;

    pthread_create(&th, NULL, sync_writer, &sa);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        len[i] = i % 4 == 0 ? stride : 4096u * (size_t)(i % 16 + 1);
        wbuf[i] = malloc(len[i]);
        rbuf[i] = malloc(len[i]);
        fill(wbuf[i], len[i], (unsigned)i);
        memset(rbuf[i], 0, len[i]);
        r = s_submit(b, i, VD_BIO_WRITE, wbuf[i], len[i], i * stride,
                     i % 3 == 0 ? VD_IO_FUA : 0);
        if (r) {
            fprintf(stderr, "remote-tool: submit write %d: %s\n", i,
                    strerror(-r));
            return 1;
        }
    }
    left = s_wait_all(n, 30);
    for (int i = 0; i < n; i++)
        errs += S.result[i] != 0;
    printf("writes=%d writes_left=%d write_errors=%d writes_s=%.3f\n", n,
           left, errs, now_s() - t0);
    bad += left + errs;
    r = s_submit(b, 0, VD_BIO_FLUSH, NULL, 0, 0, 0);
    left = r ? 1 : s_wait_all(1, 30);
    printf("flush=%d flush_left=%d flush_result=%d\n", r, left, S.result[0]);
    bad += left + (r != 0) + (S.result[0] != 0);
    t0 = now_s();
    for (int i = 0; i < n; i++)
        if ((r = s_submit(b, i, VD_BIO_READ, rbuf[i], len[i], i * stride,
                          0))) {
            fprintf(stderr, "remote-tool: submit read %d: %s\n", i,
                    strerror(-r));
            return 1;
        }
    left = s_wait_all(n, 30);
    errs = 0;
    int differ = 0;
    for (int i = 0; i < n; i++) {
        errs += S.result[i] != 0;
        differ += memcmp(wbuf[i], rbuf[i], len[i]) != 0;
    }
    printf("reads=%d reads_left=%d read_errors=%d differ=%d reads_s=%.3f\n", n,
           left, errs, differ, now_s() - t0);
    bad += left + errs + differ;
    /* the synchronous path reads what the asynchronous one wrote */
    memset(rbuf[4], 0, len[4]);
    r = b->ops->pread(b, rbuf[4], len[4], 4 * stride);
    printf("sync_read=%d sync_read_equal=%d\n", r,
           !memcmp(rbuf[4], wbuf[4], len[4]));
    bad += r != 0 || memcmp(rbuf[4], wbuf[4], len[4]);
    atomic_store(&sa.stop, 1);
    pthread_join(th, NULL);
    printf("sync_rounds=%d sync_errors=%d\n", sa.rounds, sa.errors);
    bad += sa.errors;
    printf("violations=%d reconnects=%llu\n", S.violations,
           (unsigned long long)b->n_reconnects);
    bad += S.violations;
    b->ops->close(b);
    for (int i = 0; i < n; i++) {
        free(wbuf[i]);
        free(rbuf[i]);
    }
    printf("check=%s\n", bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}

static void touch(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0)
        close(fd);
}

/* Pop a completed bio (wait at most 100 ms); -1 if none. */
static int s_pop(void)
{
    int idx = -1;

    pthread_mutex_lock(&S.lock);
    if (!S.rcount) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&S.cond, &S.lock, &ts);
    }
    if (S.rcount) {
        idx = S.ring[S.rhead];
        S.rhead = (S.rhead + 1) % NB_MAX;
        S.rcount--;
    }
    pthread_mutex_unlock(&S.lock);
    return idx;
}

static uint64_t rnd_off(uint64_t span)
{
    return ((uint64_t)random() % (span / 4096)) * 4096;
}

static int submit_silent(struct vd_bdev *b, uint32_t timeout_ms,
                         const char *dir)
{
    const int qd = 32;
    static unsigned char buf[4096];
    int inflight = 0, ok = 0, failed = 0, eagain = 0, phase = 0, r;
    int first_err = 0;
    double t0 = now_s(), t_fail = 0, t_back = 0, t_end = 0;
    double deadline = t0 + 60;

    memset(buf, 0x5a, sizeof(buf));
    for (int i = 0; i < qd; i++) {
        if ((r = s_submit(b, i, VD_BIO_WRITE, buf, 4096, rnd_off(64 << 20),
                          0))) {
            fprintf(stderr, "remote-tool: submit: %s\n", strerror(-r));
            return 2;
        }
        inflight++;
    }
    /* phase 0: load; 1: loaded (peer may go silent); 2: failed; 3: back */
    int idle[NB_MAX], nidle = 0;
    while (now_s() < deadline) {
        int idx = s_pop();
        if (idx >= 0) {
            inflight--;
            if (S.result[idx] == 0) {
                ok++;
                if (phase == 2) {
                    phase = 3;
                    t_back = now_s();
                    touch(dir, "back");
                    t_end = t_back + 1;
                }
            } else {
                failed++;
                if (!first_err)
                    first_err = S.result[idx];
                if (phase == 1) {
                    phase = 2;
                    t_fail = now_s();
                    touch(dir, "failed");
                }
            }
            idle[nidle++] = idx;
        }
        if (phase == 0 && now_s() - t0 > 1) {
            phase = 1;
            touch(dir, "loaded");
        }
        if (phase == 3 && now_s() > t_end)
            break;
        while (nidle) {
            int i = idle[nidle - 1];
            r = s_submit(b, i, VD_BIO_WRITE, buf, 4096, rnd_off(64 << 20), 0);
            if (r == -EAGAIN) {
                eagain++;
                break; /* reconnecting: try again a little later */
            }
            if (r) {
                fprintf(stderr, "remote-tool: submit: %s\n", strerror(-r));
                return 2;
            }
            nidle--;
            inflight++;
        }
        if (nidle && idx < 0)
            usleep(10000);
        else if (nidle)
            usleep(1000);
    }
    /* stop submitting; everything in flight completes within the timeout */
    double td = now_s();
    int left = s_wait_all(qd, timeout_ms / 1000.0 + 5);
    printf("phase=%d ok=%d failed=%d first_error=%d eagain=%d left=%d "
           "drain_s=%.2f\n",
           phase, ok, failed, first_err, eagain, left, now_s() - td);
    printf("fail_after_s=%.2f back_after_s=%.2f max_latency_ms=%.0f "
           "timeout_ms=%u\n",
           t_fail ? t_fail - t0 : -1.0, t_back ? t_back - t_fail : -1.0,
           S.lat_max * 1000, timeout_ms);
    printf("violations=%d reconnects=%llu\n", S.violations,
           (unsigned long long)b->n_reconnects);
    b->ops->close(b);
    /* SUBMIT_SLACK_MS: beyond the timeout (rbd: its 2 s grace) */
    const char *sl = getenv("SUBMIT_SLACK_MS");
    double slack = sl ? atof(sl) : 1500;
    int pass = phase == 3 && !left && !S.violations &&
               S.lat_max * 1000 <= timeout_ms + slack;
    printf("silent=%s\n", pass ? "ok" : "FAIL");
    return pass ? 0 : 1;
}

static int submit_close(struct vd_bdev *b, const char *dir)
{
    static unsigned char buf[1 << 20];
    const int n = 64;
    int started = 0, notdone = 0, errs = 0;
    double until = now_s() + 30;

    touch(dir, "opened");
    while (!exists(dir, "go") && now_s() < until)
        usleep(20000);
    memset(buf, 0x3c, sizeof(buf));
    for (int i = 0; i < n; i++)
        started += s_submit(b, i, VD_BIO_WRITE, buf, sizeof(buf),
                            (uint64_t)i * sizeof(buf), 0) == 0;
    usleep(50000);
    double t0 = now_s();
    b->ops->close(b);
    double tc = now_s() - t0;
    pthread_mutex_lock(&S.lock);
    for (int i = 0; i < n; i++) {
        notdone += S.ndone[i] == 0;
        errs += S.ndone[i] == 1 && S.result[i] != 0;
    }
    pthread_mutex_unlock(&S.lock);
    usleep(200000); /* a late done would show as a violation */
    printf("started=%d not_done_at_close=%d errors=%d close_s=%.2f "
           "violations=%d\n",
           started, notdone, errs, tc, S.violations);
    return notdone || S.violations ? 1 : 0;
}

struct bench_arg {
    struct vd_bdev *b;
    double until;
    long ios;
    int errors;
};

static void *bench_thread(void *arg)
{
    struct bench_arg *a = arg;
    unsigned char buf[4096];

    memset(buf, 0x11, sizeof(buf));
    while (now_s() < a->until) {
        if (a->b->ops->pwrite(a->b, buf, sizeof(buf), rnd_off(64 << 20), 0))
            a->errors++;
        a->ios++;
    }
    return NULL;
}

static int submit_bench(struct vd_bdev *b, int qd, double secs)
{
    static unsigned char buf[4096];
    long ios = 0;
    int errors = 0, inflight = 0;

    if (qd > NB_MAX)
        qd = NB_MAX;
    memset(buf, 0x11, sizeof(buf));
    double t0 = now_s(), until = t0 + secs;
    for (int i = 0; i < qd; i++)
        if (s_submit(b, i, VD_BIO_WRITE, buf, 4096, rnd_off(64 << 20), 0) == 0)
            inflight++;
    while (inflight) {
        int idx = s_pop();
        if (idx < 0)
            continue;
        inflight--;
        ios++;
        errors += S.result[idx] != 0;
        if (now_s() < until &&
            s_submit(b, idx, VD_BIO_WRITE, buf, 4096, rnd_off(64 << 20), 0) ==
                0)
            inflight++;
    }
    double t_async = now_s() - t0;

    pthread_t th[NB_MAX];
    struct bench_arg a[NB_MAX];
    t0 = now_s();
    for (int i = 0; i < qd; i++) {
        a[i] = (struct bench_arg){ .b = b, .until = t0 + secs };
        pthread_create(&th[i], NULL, bench_thread, &a[i]);
    }
    long sios = 0;
    int serrors = 0;
    for (int i = 0; i < qd; i++) {
        pthread_join(th[i], NULL);
        sios += a[i].ios;
        serrors += a[i].errors;
    }
    double t_sync = now_s() - t0;
    printf("qd=%d submit_iops=%.0f submit_errors=%d pwrite_threads_iops=%.0f "
           "pwrite_errors=%d violations=%d\n",
           qd, ios / t_async, errors, sios / t_sync, serrors, S.violations);
    b->ops->close(b);
    return errors || serrors || S.violations;
}

static int submit_main(int argc, char **argv)
{
    struct vd_bdev *b;
    const char *mode = argv[4];

    g_main = pthread_self();
    srandom((unsigned)getpid());
    if (open_dev(argv[2], argv[3], &b) < 0)
        return 2;
    if (!b->ops->submit) {
        fprintf(stderr, "remote-tool: the iscsi driver has no submit op\n");
        return 2;
    }
    if (!strcmp(mode, "check"))
        return submit_check(b);
    if (!strcmp(mode, "silent") && argc == 6)
        return submit_silent(b, (uint32_t)atoi(argv[3]), argv[5]);
    if (!strcmp(mode, "close") && argc == 6)
        return submit_close(b, argv[5]);
    if (!strcmp(mode, "bench") && argc == 7)
        return submit_bench(b, atoi(argv[5]), atof(argv[6]));
    fprintf(stderr, "remote-tool: submit: unknown mode %s\n", mode);
    return 2;
}

int main(int argc, char **argv)
{
    vd_log_set_fn(log_fn);
    if (argc == 5 && !strcmp(argv[1], "stale-write"))
        return stale_write(argv[2], argv[3], argv[4]);
    if (argc == 3 && !strcmp(argv[1], "takeover")) {
        struct vd_conf_pool *conf;
        char err[512];
        if (vd_conf_load(argv[2], &conf, err, sizeof(err)) < 0) {
            fprintf(stderr, "remote-tool: %s\n", err);
            return 1;
        }
        int r = vd_pool_takeover(conf);
        vd_conf_free(conf);
        return r < 0;
    }
    if (argc == 4 && !strcmp(argv[1], "open")) {
        struct vd_bdev *b;
        if (open_dev(argv[2], argv[3], &b) < 0)
            return 1;
        b->ops->close(b);
        return 0;
    }
    if (argc >= 5 && !strcmp(argv[1], "submit"))
        return submit_main(argc, argv);
    if (argc == 5 && !strcmp(argv[1], "zero"))
        return zero(argv[2], strtoull(argv[3], NULL, 0),
                    strtoull(argv[4], NULL, 0));
    fprintf(stderr, "usage: remote-tool stale-write URL TIMEOUT_MS SHIMDIR | "
            "takeover POOL.yaml | open URL TIMEOUT_MS | zero URL OFF LEN | "
            "submit URL TIMEOUT_MS check|silent DIR|close DIR|bench QD S\n");
    return 2;
}
