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
 */
#include <errno.h>
#include <fcntl.h>
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
    c.iscsi_url = (char *)url;
    c.timeout_ms = (uint32_t)atoi(ms);
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
    if (argc == 5 && !strcmp(argv[1], "zero"))
        return zero(argv[2], strtoull(argv[3], NULL, 0),
                    strtoull(argv[4], NULL, 0));
    fprintf(stderr, "usage: remote-tool stale-write URL TIMEOUT_MS SHIMDIR | "
            "takeover POOL.yaml | open URL TIMEOUT_MS | zero URL OFF LEN\n");
    return 2;
}
