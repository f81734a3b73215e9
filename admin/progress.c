/* vdlvm admin: progress of long commands (see admin_int.h for the API).
 *
 * On a terminal: one line redrawn in place (carriage return, erase to end
 * of line) at most every PROGRESS_REDRAW_MS, with a bar, the percentage,
 * bytes done of total, the rate and the time left.  Otherwise (a file, a
 * pipe, the memory stream of a command run inside tgtd): one line per step
 * of PROGRESS_STEP_PCT percent, so that logs stay short and greppable.
 *
 * The rate is measured over a sliding window of samples (about 4 s), so
 * that the time left does not jump with each burst of regions copied.
 * Each struct admin_progress belongs to the thread of the command that
 * started it.  Shared: the table of published jobs (progress_jobs.h: a
 * command running inside tgtd), g_jobs under g_jobs_lock.
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
#include "progress_jobs.h"

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

/* ---- published jobs (progress_jobs.h) -------------------------------------- */
/* A slot is identified by the address of the struct admin_progress that
 * published it (never dereferenced here).  g_njobs: slots in use, read
 * without the lock to skip it while nothing is published. */
struct job_slot {
    const void *owner; /* NULL: free */
    struct admin_job job;
    int64_t t0_ms;
};
static pthread_mutex_t g_jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job_slot g_jobs[ADMIN_JOBS_MAX];
static int g_njobs;

/* "WHAT POOL/OBJ" (the object the last word, with a '/'): 0, or -1. */
static int split_label(const char *label, struct admin_job *j)
{
    const char *sp = strchr(label, ' ');
    const char *obj = strrchr(label, ' ');

    if (!sp || !obj || !strchr(obj + 1, '/') || obj[1] == '/' ||
        (size_t)(sp - label) >= sizeof(j->what) ||
        strlen(obj + 1) >= sizeof(j->object))
        return -1;
    snprintf(j->what, sizeof(j->what), "%.*s", (int)(sp - label), label);
    snprintf(j->object, sizeof(j->object), "%s", obj + 1);
    return 0;
}

/* Publish p (started with label and total): 0, or -1 when its label does
 * not name an object or the table is full (then it is drawn as before). */
static int job_publish(const struct admin_progress *p)
{
    struct admin_job j;
    int r = -1;

    memset(&j, 0, sizeof(j));
    if (split_label(p->label, &j) < 0)
        return -1;
    j.total = p->total;
    pthread_mutex_lock(&g_jobs_lock);
    for (int i = 0; i < ADMIN_JOBS_MAX; i++)
        if (!g_jobs[i].owner) {
            g_jobs[i].owner = p;
            g_jobs[i].job = j;
            g_jobs[i].t0_ms = p->t0_ms;
            __atomic_add_fetch(&g_njobs, 1, __ATOMIC_RELAXED);
            r = 0;
            break;
        }
    pthread_mutex_unlock(&g_jobs_lock);
    return r;
}

static void job_update(const struct admin_progress *p, int64_t now_ms)
{
    if (!__atomic_load_n(&g_njobs, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&g_jobs_lock);
    for (int i = 0; i < ADMIN_JOBS_MAX; i++)
        if (g_jobs[i].owner == p) {
            g_jobs[i].job.done = p->done;
            g_jobs[i].job.total = p->total;
            g_jobs[i].job.rate = p->have_rate ? (uint64_t)p->rate : 0;
            g_jobs[i].job.elapsed_ms =
                now_ms > g_jobs[i].t0_ms ? (uint64_t)(now_ms - g_jobs[i].t0_ms)
                                         : 0;
            break;
        }
    pthread_mutex_unlock(&g_jobs_lock);
}

static void job_remove(const struct admin_progress *p)
{
    if (!__atomic_load_n(&g_njobs, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&g_jobs_lock);
    for (int i = 0; i < ADMIN_JOBS_MAX; i++)
        if (g_jobs[i].owner == p) {
            memset(&g_jobs[i], 0, sizeof(g_jobs[i]));
            __atomic_sub_fetch(&g_njobs, 1, __ATOMIC_RELAXED);
            break;
        }
    pthread_mutex_unlock(&g_jobs_lock);
}

size_t admin_jobs_list(const char *pool, const char *vol,
                       struct admin_job *jobs, size_t max)
{
    size_t n = 0, pl = pool ? strlen(pool) : 0;

    pthread_mutex_lock(&g_jobs_lock);
    for (int i = 0; i < ADMIN_JOBS_MAX && n < max; i++) {
        const struct admin_job *j = &g_jobs[i].job;
        if (!g_jobs[i].owner)
            continue;
        if (pool && (strncmp(j->object, pool, pl) || j->object[pl] != '/'))
            continue;
        if (pool && vol && strcmp(j->object + pl + 1, vol))
            continue;
        jobs[n++] = *j;
    }
    pthread_mutex_unlock(&g_jobs_lock);
    return n;
}

void admin_job_json(FILE *out, const struct admin_job *j)
{
    uint64_t eta = admin_progress_eta(j->done, j->total, j->rate);

    fputs("{\"job\":", out);
    admin_jstr(out, j->what);
    fputs(",\"object\":", out);
    admin_jstr(out, j->object);
    fprintf(out,
            ",\"done_bytes\":%" PRIu64 ",\"total_bytes\":%" PRIu64
            ",\"rate_bytes_per_s\":%" PRIu64 ",\"elapsed_ms\":%" PRIu64
            ",\"eta_s\":",
            j->done, j->total, j->rate, j->elapsed_ms);
    if (eta == UINT64_MAX)
        fputs("null}", out);
    else
        fprintf(out, "%" PRIu64 "}", eta);
}

void admin_job_text(FILE *out, const struct admin_job *j)
{
    char line[200];

    admin_progress_line(line, sizeof(line), j->done, j->total, j->rate,
                        PROGRESS_BAR_WIDTH);
    fprintf(out, "  %s %s: %s\n", j->what, j->object, line);
}

void admin_jobs_json(FILE *out, const char *pool, const char *vol)
{
    struct admin_job j[ADMIN_JOBS_MAX];
    size_t n = admin_jobs_list(pool, vol, j, ADMIN_JOBS_MAX);

    fputs("\"jobs\":[", out);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', out);
        admin_job_json(out, &j[i]);
    }
    fputc(']', out);
}

void admin_jobs_text(FILE *out, const char *pool, const char *vol)
{
    struct admin_job j[ADMIN_JOBS_MAX];
    size_t n = admin_jobs_list(pool, vol, j, ADMIN_JOBS_MAX);

    for (size_t i = 0; i < n; i++)
        admin_job_text(out, &j[i]);
}

void admin_progress_start(struct admin_progress *p, FILE *f, const char *label,
                          uint64_t total, int tty)
{
    int tty_arg = tty;

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
    /* Inside tgtd (a memory stream: no descriptor; tty left to us): the
     * client draws it from the published job (progress_jobs.h). */
    if (f && tty_arg < 0 && fileno(f) < 0 && job_publish(p) == 0)
        p->f = NULL;
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
    job_update(p, now_ms);
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

    job_remove(p);
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

static int has_word(int argc, char **argv, const char *w)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], w))
            return 1;
    return 0;
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
static int parse_verify(const char *json, const void *ctx, uint64_t *done,
                        uint64_t *total)
{
    (void)ctx;
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
static int parse_tier_pass(const char *json, const void *ctx, uint64_t *done,
                           uint64_t *total)
{
    (void)ctx;
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

/* dev evacuate POOL/DEV --wait, pool rebalance POOL --wait: the job runs
 * inside tgtd and answers when done; the bar is drawn from `status POOL
 * --json`'s "move" object.  *target: POOL/DEV or POOL; *rebal. */
static int is_move_wait(int argc, char **argv, const char **target, int *rebal)
{
    int wait = 0;

    *target = NULL;
    if (argc < 3)
        return 0;
    if (!strcmp(argv[0], "dev") && !strcmp(argv[1], "evacuate"))
        *rebal = 0;
    else if (!strcmp(argv[0], "pool") && !strcmp(argv[1], "rebalance"))
        *rebal = 1;
    else
        return 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--wait"))
            wait = 1;
        else if (!strcmp(argv[i], "--rate") || !strcmp(argv[i], "--to"))
            i++;
        else if (argv[i][0] != '-' && !*target)
            *target = argv[i];
    }
    return wait && *target;
}

/* done and total bytes of a running evacuation / rebalance from `status
 * POOL --json`: 0, or -EINVAL when none runs. */
static int parse_move(const char *json, const char *key_done,
                      const char *key_total, uint64_t *done, uint64_t *total)
{
    const char *p = json ? strstr(json, "\"move\":{") : NULL;
    const char *d = p ? strstr(p, key_done) : NULL;
    const char *t = p ? strstr(p, key_total) : NULL;
    unsigned long long a, b;

    if (!d || !t || sscanf(d + strlen(key_done), "%llu", &a) != 1 ||
        sscanf(t + strlen(key_total), "%llu", &b) != 1)
        return -EINVAL;
    *done = a;
    *total = b;
    return 0;
}

static int parse_evac(const char *json, const void *ctx, uint64_t *done,
                      uint64_t *total)
{
    (void)ctx;
    return parse_move(
        json, "\"evac_done_bytes\":", "\"evac_total_bytes\":", done, total);
}

static int parse_rebal(const char *json, const void *ctx, uint64_t *done,
                       uint64_t *total)
{
    (void)ctx;
    return parse_move(json, "\"reb_done_bytes\":", "\"reb_total_bytes\":", done,
                      total);
}

/* The command runs on a thread of this process while this one polls the
 * status command st_argv (st_argc words) every PROGRESS_POLL_MS, parse gets
 * done/total from its JSON, and the bar (tty 1) or lines (tty -1: as
 * err is) are drawn under label.  verify: exit code VD_EXIT_DIFF is a
 * success too. */
static int poll_progress_call(const char *pool_name, int argc, char **argv,
                              int st_argc, char **st_argv, const char *label,
                              int (*parse)(const char *, const void *,
                                           uint64_t *, uint64_t *),
                              const void *ctx, int tty, int verify, FILE *out,
                              FILE *err, int *exit_code)
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
                parse(sbuf, ctx, &done, &total) == 0 && total) {
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

/* ---- jobs published inside tgtd (progress_jobs.h) ------------------------ */
/* resync --wait, vol repair --wait, vol import, vol export, vol encrypt
 * --wait: the command runs inside tgtd, publishes its progress as a job
 * "WHAT POOL/OBJ" and draws nothing there; the bar (or the step lines)
 * is drawn here from `stats POOL --json`'s "jobs". */
struct job_key {
    const char *what, *object;
};

/* The words of argv from `from` that are not options nor option values:
 * the first one (POOL/VOL), or NULL. */
static const char *first_operand(int argc, char **argv, int from)
{
    static const char *const with_value[] = {
        "--rate", "--to",     "--format",   "--size", "--replace", "--with",
        "--lun",  "--target", "--key-file", "--conf", "--layout",  NULL
    };

    for (int i = from; i < argc; i++) {
        int val = 0;
        if (argv[i][0] != '-')
            return argv[i];
        for (int k = 0; with_value[k]; k++)
            val |= !strcmp(argv[i], with_value[k]);
        if (val && !strchr(argv[i], '='))
            i++;
    }
    return NULL;
}

/* The job a command publishes inside tgtd, or 0 when it publishes none. */
static int is_job_cmd(int argc, char **argv, struct job_key *k)
{
    int wait = has_word(argc, argv, "--wait");

    k->what = NULL;
    if (argc >= 2 && !strcmp(argv[0], "resync") && wait) {
        k->what = "resync";
        k->object = first_operand(argc, argv, 1);
    } else if (argc >= 3 && !strcmp(argv[0], "vol")) {
        if (!strcmp(argv[1], "repair") && wait)
            k->what = "rebuild";
        else if (!strcmp(argv[1], "import"))
            k->what = "import";
        else if (!strcmp(argv[1], "export"))
            k->what = "export";
        else if (!strcmp(argv[1], "encrypt") && wait)
            k->what = "encrypt";
        k->object = first_operand(argc, argv, 2);
    }
    return k->what && k->object && strchr(k->object, '/');
}

/* done and total bytes of the job k from `stats POOL --json`: 0, or
 * -EINVAL when it does not run (yet, or any more). */
static int parse_job(const char *json, const void *ctx, uint64_t *done,
                     uint64_t *total)
{
    const struct job_key *k = ctx;
    char needle[300];
    const char *p = json ? strstr(json, "\"jobs\":[") : NULL;
    unsigned long long a, b;

    snprintf(needle, sizeof(needle), "{\"job\":\"%s\",\"object\":\"%s\",",
             k->what, k->object);
    p = p ? strstr(p, needle) : NULL;
    if (!p || sscanf(p + strlen(needle),
                     "\"done_bytes\":%llu,\"total_bytes\":%llu", &a, &b) != 2)
        return -EINVAL;
    *done = a;
    *total = b;
    return 0;
}

int vd_ctl_call_progress(const char *pool_name, int argc, char **argv,
                         FILE *out, FILE *err, int *exit_code)
{
    const char *target;
    char *st_argv[] = { "status", NULL, "--json", NULL };
    char label[400];
    int repair, rebal;
    struct job_key jk;

    if (!err || fileno(err) < 0)
        return vd_ctl_call(pool_name, argc, argv, out, err, exit_code);
    if (is_verify(argc, argv, &target, &repair)) {
        st_argv[1] = (char *)target;
        snprintf(label, sizeof(label), "%s %s",
                 repair ? "verify --repair" : "verify", target);
        return poll_progress_call(pool_name, argc, argv, 3, st_argv, label,
                                  parse_verify, NULL, -1, 1, out, err,
                                  exit_code);
    }
    if (is_tier_run_wait(argc, argv, &target)) {
        char *tst_argv[] = { "tier", "status", (char *)target, "--json", NULL };
        snprintf(label, sizeof(label), "tier run %s", target);
        return poll_progress_call(pool_name, argc, argv, 4, tst_argv, label,
                                  parse_tier_pass, NULL, -1, 0, out, err,
                                  exit_code);
    }
    if (is_move_wait(argc, argv, &target, &rebal)) {
        char pool_arg[VD_NAME_MAX + 1];
        snprintf(pool_arg, sizeof(pool_arg), "%.*s", (int)strcspn(target, "/"),
                 target);
        char *mst_argv[] = { "status", pool_arg, "--json", NULL };
        snprintf(label, sizeof(label), "%s %s",
                 rebal ? "rebalance" : "evacuate", target);
        return poll_progress_call(pool_name, argc, argv, 3, mst_argv, label,
                                  rebal ? parse_rebal : parse_evac, NULL, -1, 0,
                                  out, err, exit_code);
    }
    if (is_job_cmd(argc, argv, &jk)) {
        char pool_arg[VD_NAME_MAX + 1];
        snprintf(pool_arg, sizeof(pool_arg), "%.*s",
                 (int)strcspn(jk.object, "/"), jk.object);
        char *jst_argv[] = { "stats", pool_arg, "--json", NULL };
        snprintf(label, sizeof(label), "%s %s", jk.what, jk.object);
        return poll_progress_call(pool_name, argc, argv, 3, jst_argv, label,
                                  parse_job, &jk, -1, 0, out, err, exit_code);
    }
    return vd_ctl_call(pool_name, argc, argv, out, err, exit_code);
}
