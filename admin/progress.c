/* vdlvm admin: progress of long commands (see admin_int.h for the API).
 *
 * On a terminal: one line redrawn in place (carriage return, erase to end
 * of line) at most every PROGRESS_REDRAW_MS, with a bar, the percentage,
 * bytes done of total, the rate and the time left.  Otherwise (a file, a
 * pipe, the memory stream of a command run inside tgtd): one line per step
 * of PROGRESS_STEP_PCT percent, so that logs stay short and greppable.
 *
 * The rate is measured over a sliding window of samples (about 4 s), so
 * that the time left does not jump with each burst of regions copied.  Each struct admin_progress belongs to the thread of the
 * command that started it; nothing here is shared.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../replica/vdreplica.h"
#include "admin_int.h"

#define PROGRESS_REDRAW_MS 100
#define PROGRESS_SAMPLE_MS 500
#define PROGRESS_STEP_PCT  10
#define PROGRESS_BAR_WIDTH 30
#define PROGRESS_POLL_MS   250

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t admin_progress_eta(uint64_t done, uint64_t total, uint64_t rate)
{
    if (done >= total)
        return 0;
    if (!rate)
        return UINT64_MAX;
    /* rounded up, without overflow near UINT64_MAX */
    return (total - done) / rate + ((total - done) % rate != 0);
}

static unsigned pct_of(uint64_t done, uint64_t total)
{
    if (!total || done >= total)
        return 100;
    return (unsigned)((unsigned __int128)done * 100 / total);
}

void admin_progress_line(char *buf, size_t len, uint64_t done, uint64_t total,
                         uint64_t rate, int bar)
{
    char d[32], t[32], r[40], eta[32];
    unsigned pct = pct_of(done, total);
    uint64_t left = admin_progress_eta(done, total, rate);
    size_t n = 0;

    if (done > total)
        done = total;
    admin_fmt_size(done, d, sizeof(d));
    admin_fmt_size(total, t, sizeof(t));
    if (rate)
        admin_fmt_rate(rate, r, sizeof(r));
    else
        snprintf(r, sizeof(r), "-");
    if (left == UINT64_MAX)
        snprintf(eta, sizeof(eta), "time left unknown");
    else if (left >= 3600)
        snprintf(eta, sizeof(eta), "%" PRIu64 ":%02u:%02u left", left / 3600,
                 (unsigned)(left / 60 % 60), (unsigned)(left % 60));
    else
        snprintf(eta, sizeof(eta), "%u:%02u left", (unsigned)(left / 60),
                 (unsigned)(left % 60));
    if (len == 0)
        return;
    buf[0] = 0;
    if (bar > 0 && (size_t)bar + 3 < len) {
        buf[n++] = '[';
        for (int i = 0; i < bar; i++)
            buf[n++] = (unsigned)i < pct * (unsigned)bar / 100 ? '#' : '.';
        buf[n++] = ']';
        buf[n++] = ' ';
        buf[n] = 0;
    }
    snprintf(buf + n, len - n, "%3u%%  %s of %s  %s  %s", pct, d, t, r, eta);
}

void admin_progress_start(struct admin_progress *p, FILE *f, const char *label,
                          uint64_t total, int tty)
{
    memset(p, 0, sizeof(*p));
    p->f = f;
    if (tty < 0) {
        int fd = f ? fileno(f) : -1;
        tty = fd >= 0 && isatty(fd);
    }
    p->tty = tty;
    snprintf(p->label, sizeof(p->label), "%s", label ? label : "");
    p->total = total;
    p->t0_ms = p->last_ms = p->sample_ms = mono_ms();
    p->step = -1;
}

void admin_progress_update_at(struct admin_progress *p, uint64_t done,
                              uint64_t total, int64_t now_ms)
{
    char line[256];

    p->total = total;
    p->done = done;
    /* The rate over a window of the last PROGRESS_WINDOW samples (at least
     * PROGRESS_SAMPLE_MS apart): steady although a resync reports its
     * progress in bursts, yet following a change of rate within seconds. */
    if (p->nwin == 0 || now_ms - p->sample_ms >= PROGRESS_SAMPLE_MS) {
        int i = p->nwin < PROGRESS_WINDOW ? p->nwin++ : p->win_head;
        if (p->nwin == PROGRESS_WINDOW)
            p->win_head = (i + 1) % PROGRESS_WINDOW;
        p->win_ms[i] = now_ms;
        p->win_done[i] = done;
        p->sample_ms = now_ms;
        int old = p->nwin < PROGRESS_WINDOW ? 0 : p->win_head;
        int64_t dt = now_ms - p->win_ms[old];
        if (dt > 0 && done >= p->win_done[old]) {
            p->rate = (done - p->win_done[old]) * 1000.0 / dt;
            p->have_rate = 1;
        }
    }
    if (!p->f)
        return;
    if (p->tty) {
        if (p->shown && now_ms - p->last_ms < PROGRESS_REDRAW_MS)
            return;
        admin_progress_line(line, sizeof(line), done, total, (uint64_t)p->rate,
                            PROGRESS_BAR_WIDTH);
        fprintf(p->f, "\r%s: %s\033[K", p->label, line);
        fflush(p->f);
        p->shown = 1;
        p->last_ms = now_ms;
        return;
    }
    int step = (int)(pct_of(done, total) / PROGRESS_STEP_PCT);
    if (step <= p->step)
        return;
    p->step = step;
    admin_progress_line(line, sizeof(line), done, total, (uint64_t)p->rate, 0);
    fprintf(p->f, "%s: %s\n", p->label, line);
    fflush(p->f);
    p->last_ms = now_ms;
}

void admin_progress_update(struct admin_progress *p, uint64_t done,
                           uint64_t total)
{
    admin_progress_update_at(p, done, total, mono_ms());
}

void admin_progress_end_at(struct admin_progress *p, const char *result,
                           int64_t now_ms)
{
    int64_t ms = now_ms - p->t0_ms;
    char avg[40] = "", sz[32];

    if (!p->f)
        return;
    if (ms > 0 && p->done) {
        admin_fmt_rate((uint64_t)(p->done * 1000.0 / ms), avg, sizeof(avg));
        admin_fmt_size(p->done, sz, sizeof(sz));
    }
    if (p->tty && p->shown)
        fputs("\r\033[K", p->f);
    fprintf(p->f, "%s: %s", p->label, result ? result : "done");
    if (avg[0])
        fprintf(p->f, " (%s in %" PRId64 ".%01" PRId64 " s, %s)", sz, ms / 1000,
                ms % 1000 / 100, avg);
    fputc('\n', p->f);
    fflush(p->f);
}

void admin_progress_end(struct admin_progress *p, const char *result)
{
    admin_progress_end_at(p, result, mono_ms());
}

int admin_resync_wait(vd_pool *pool, const char *pool_name, const char *vol,
                      const char *what, FILE *err)
{
    struct admin_progress pg;
    struct vd_mirror_info mi;
    char label[160];
    int r, started = 0;

    snprintf(label, sizeof(label), "%s %s/%s", what, pool_name, vol);
    for (;;) {
        r = vd_mirror_resync_wait(pool, vol, PROGRESS_POLL_MS);
        if (r != -ETIMEDOUT)
            break;
        if (vd_mirror_get_info(pool, vol, &mi) < 0 || !mi.total_bytes)
            continue;
        if (!started++)
            admin_progress_start(&pg, err, label, mi.total_bytes, -1);
        admin_progress_update(&pg, mi.done_bytes, mi.total_bytes);
    }
    if (started) {
        if (r == 0)
            admin_progress_update(&pg, pg.total, pg.total);
        admin_progress_end(&pg, r == 0 ? "done" : "stopped");
    }
    return r;
}

/* ---- resync --wait through the tgtd holding the pool --------------------- */
/* The command runs inside tgtd and its output comes back only when it is
 * done, so the bar is drawn here, in the vdlvm process: start the resync
 * without --wait, poll `status POOL/VOL --json` until it is idle, then run
 * the command with --wait (which returns at once, with the final check of
 * the legs and the message). */

static int is_resync_wait(int argc, char **argv, const char **target)
{
    int wait = 0;

    *target = NULL;
    if (argc < 2 || strcmp(argv[0], "resync"))
        return 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--wait"))
            wait = 1;
        else if (!strcmp(argv[i], "--rate"))
            i++;
        else if (argv[i][0] != '-' && strchr(argv[i], '/'))
            *target = argv[i];
    }
    return wait && *target;
}

/* Resync state, done and total bytes from a volume's status JSON: 0, or
 * -EINVAL when it has none (not a mirror). */
static int parse_resync(const char *json, int *running, uint64_t *done,
                        uint64_t *total)
{
    const char *p = json ? strstr(json, "\"resync\":{\"state\":\"") : NULL;
    unsigned long long d, t;
    char state[16];

    if (!p || sscanf(p,
                     "\"resync\":{\"state\":\"%15[a-z]\",\"done_bytes\":%llu,"
                     "\"total_bytes\":%llu",
                     state, &d, &t) != 3)
        return -EINVAL;
    *running = strcmp(state, "idle") != 0;
    *done = d;
    *total = t;
    return 0;
}

/* ---- verify through the tgtd holding the pool ----------------------------- */
/* verify runs inside tgtd and answers only when it is done: the call runs
 * on a thread of this process (its output into memory streams, printed
 * once it returns) while this thread polls `status POOL/VOL --json`
 * (another connection: the control socket serves each on its own thread)
 * for the volume's "verify" object and draws the bar.  The thread's
 * struct is written by it only before done is set (release) and read
 * here only after done is seen (acquire) and the thread joined. */

struct verify_call {
    const char *pool;
    int argc;
    char **argv;
    FILE *out, *err;
    int r, code, done;
};

static void *verify_call_main(void *arg)
{
    struct verify_call *c = arg;

    c->r = vd_ctl_call(c->pool, c->argc, c->argv, c->out, c->err, &c->code);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static int is_verify(int argc, char **argv, const char **target, int *repair)
{
    *target = NULL;
    *repair = 0;
    if (argc < 2 || strcmp(argv[0], "verify"))
        return 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repair"))
            *repair = 1;
        else if (argv[i][0] != '-' && strchr(argv[i], '/'))
            *target = argv[i];
    }
    return *target != NULL;
}

/* done and total bytes of a running verify from a volume's status JSON:
 * 0, or -EINVAL when none runs. */
static int parse_verify(const char *json, uint64_t *done, uint64_t *total)
{
    const char *p = json ? strstr(json, "\"verify\":{\"volume\":") : NULL;
    const char *d = p ? strstr(p, "\"done_bytes\":") : NULL;
    const char *t = p ? strstr(p, "\"total_bytes\":") : NULL;
    unsigned long long a, b;

    if (!d || !t || sscanf(d, "\"done_bytes\":%llu", &a) != 1 ||
        sscanf(t, "\"total_bytes\":%llu", &b) != 1)
        return -EINVAL;
    *done = a;
    *total = b;
    return 0;
}

/* tier run POOL/VOL --wait: the pass runs inside tgtd and answers when
 * done; the bar is drawn from `tier status POOL/VOL --json`'s "pass". */
static int is_tier_run_wait(int argc, char **argv, const char **target)
{
    int wait = 0;

    *target = NULL;
    if (argc < 3 || strcmp(argv[0], "tier") || strcmp(argv[1], "run"))
        return 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--wait"))
            wait = 1;
        else if (argv[i][0] != '-' && strchr(argv[i], '/'))
            *target = argv[i];
    }
    return wait && *target;
}

/* done and total bytes of a running tier pass from `tier status --json`:
 * 0, or -EINVAL when none runs. */
static int parse_tier_pass(const char *json, uint64_t *done, uint64_t *total)
{
    const char *p = json ? strstr(json, "\"pass\":{\"running\":true") : NULL;
    unsigned long long a, b;

    if (!p || sscanf(p,
                     "\"pass\":{\"running\":true,\"done_bytes\":%llu,"
                     "\"total_bytes\":%llu",
                     &a, &b) != 2)
        return -EINVAL;
    *done = a;
    *total = b;
    return 0;
}

/* The command runs on a thread of this process while this one polls the
 * status command st_argv (st_argc words) every PROGRESS_POLL_MS, parse gets
 * done/total from its JSON, and the bar (tty 1) or lines (tty -1: as
 * err is) are drawn under label.  verify: exit code VD_EXIT_DIFF is a
 * success too. */
static int
poll_progress_call(const char *pool_name, int argc, char **argv, int st_argc,
                   char **st_argv, const char *label,
                   int (*parse)(const char *, uint64_t *, uint64_t *), int tty,
                   int verify, FILE *out, FILE *err, int *exit_code)
{
    struct verify_call c = { .pool = pool_name, .argc = argc, .argv = argv };
    char *obuf = NULL, *ebuf = NULL;
    size_t olen = 0, elen = 0;
    struct admin_progress pg;
    pthread_t tid;
    int started = 0;

    c.out = open_memstream(&obuf, &olen);
    c.err = open_memstream(&ebuf, &elen);
    if (!c.out || !c.err || pthread_create(&tid, NULL, verify_call_main, &c)) {
        if (c.out)
            fclose(c.out);
        if (c.err)
            fclose(c.err);
        free(obuf);
        free(ebuf);
        return vd_ctl_call(pool_name, argc, argv, out, err, exit_code);
    }
    while (!__atomic_load_n(&c.done, __ATOMIC_ACQUIRE)) {
        char *sbuf = NULL, *xbuf = NULL;
        size_t slen = 0, xlen = 0;
        FILE *s = open_memstream(&sbuf, &slen);
        FILE *x = open_memstream(&xbuf, &xlen); /* status' messages: dropped */
        uint64_t done, total;
        int code = -1;

        if (s && x) {
            int r = vd_ctl_call(pool_name, st_argc, st_argv, s, x, &code);
            fclose(s);
            s = NULL;
            if (r == 0 && code == VD_EXIT_OK &&
                parse(sbuf, &done, &total) == 0 && total) {
                if (!started++)
                    admin_progress_start(&pg, err, label, total, tty);
                admin_progress_update(&pg, done, total);
            }
        }
        if (s)
            fclose(s);
        if (x)
            fclose(x);
        free(sbuf);
        free(xbuf);
        for (int i = 0; i < PROGRESS_POLL_MS / 10 &&
                        !__atomic_load_n(&c.done, __ATOMIC_ACQUIRE);
             i++)
            usleep(10 * 1000);
    }
    pthread_join(tid, NULL);
    fclose(c.out);
    fclose(c.err);
    if (started) {
        int ok = c.r == 0 &&
                 (c.code == VD_EXIT_OK || (verify && c.code == VD_EXIT_DIFF));
        if (ok)
            admin_progress_update(&pg, pg.total, pg.total);
        admin_progress_end(&pg, ok ? "done" : "stopped");
    }
    if (obuf)
        fwrite(obuf, 1, olen, out);
    if (ebuf)
        fwrite(ebuf, 1, elen, err);
    free(obuf);
    free(ebuf);
    *exit_code = c.code;
    return c.r;
}

int vd_ctl_call_progress(const char *pool_name, int argc, char **argv,
                         FILE *out, FILE *err, int *exit_code)
{
    const char *target;
    struct admin_progress pg;
    char *st_argv[] = { "status", NULL, "--json", NULL };
    char *argv2[argc + 1];
    int n = 0, r, code, started = 0, repair;

    if (err && fileno(err) >= 0 && isatty(fileno(err)) &&
        is_verify(argc, argv, &target, &repair)) {
        char label[160];
        st_argv[1] = (char *)target;
        snprintf(label, sizeof(label), "%s %s",
                 repair ? "verify --repair" : "verify", target);
        return poll_progress_call(pool_name, argc, argv, 3, st_argv, label,
                                  parse_verify, 1, 1, out, err, exit_code);
    }
    if (err && fileno(err) >= 0 && is_tier_run_wait(argc, argv, &target)) {
        char label[160];
        char *tst_argv[] = { "tier", "status", (char *)target, "--json", NULL };
        snprintf(label, sizeof(label), "tier run %s", target);
        return poll_progress_call(pool_name, argc, argv, 4, tst_argv, label,
                                  parse_tier_pass, -1, 0, out, err, exit_code);
    }
    if (!is_resync_wait(argc, argv, &target) || !err || fileno(err) < 0 ||
        !isatty(fileno(err)))
        return vd_ctl_call(pool_name, argc, argv, out, err, exit_code);
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--wait"))
            argv2[n++] = argv[i];
    argv2[n] = NULL;
    {
        char *obuf = NULL;
        size_t olen = 0;
        FILE *o = open_memstream(&obuf, &olen);
        if (!o)
            return vd_ctl_call(pool_name, argc, argv, out, err, exit_code);
        r = vd_ctl_call(pool_name, n, argv2, o, err, &code);
        fclose(o);
        if (r == 0 && code != VD_EXIT_OK && obuf)
            fputs(obuf, out);
        free(obuf);
        if (r < 0 || code != VD_EXIT_OK) {
            *exit_code = code;
            return r;
        }
    }
    st_argv[1] = (char *)target;
    for (;;) {
        char *sbuf = NULL;
        size_t slen = 0;
        FILE *s = open_memstream(&sbuf, &slen);
        int running = 0;
        uint64_t done = 0, total = 0;

        if (!s)
            break;
        r = vd_ctl_call(pool_name, 3, st_argv, s, err, &code);
        fclose(s);
        r = r == 0 && code == VD_EXIT_OK
                ? parse_resync(sbuf, &running, &done, &total)
                : -EIO;
        free(sbuf);
        if (r < 0 || !running)
            break;
        if (total) {
            char label[160];
            snprintf(label, sizeof(label), "resync %s", target);
            if (!started++)
                admin_progress_start(&pg, err, label, total, 1);
            admin_progress_update(&pg, done, total);
        }
        usleep(PROGRESS_POLL_MS * 1000);
    }
    if (started) {
        admin_progress_update(&pg, pg.total, pg.total);
        admin_progress_end(&pg, "copied");
    }
    return vd_ctl_call(pool_name, argc, argv, out, err, exit_code);
}
