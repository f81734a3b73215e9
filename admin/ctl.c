/* vdlvm admin: the control socket (vd_ctl_*): a tgtd holding a pool serves
 * the admin commands of that pool to `vdlvm` on RUNDIR/POOL.sock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vdadmin.h"

/* ---- control socket ----------------------------------------------------- */
/* Wire format, all integers little-endian u32:
 *   request: magic, argc, len, then len bytes holding argc NUL-terminated
 *            arguments (argv[0] is the command word)
 *   reply:   exit code, out length, out bytes, err length, err bytes
 * A request is bounded by CTL_MAX_REQ bytes and CTL_MAX_ARGC arguments; the
 * server reads it within CTL_SERVER_MS in total and answers anything
 * malformed with exit 2 and a message.
 *
 * Threads.  The serving thread (tgtd's main thread in the module) only
 * accepts: every request is read, checked and run by a detached thread of
 * its own (a "job"), because any command may wait on a device, the network
 * or the pool's admin lock, which is held across metadata commits to
 * remote devices.  At most VD_CTL_MAX_JOBS jobs per pool; beyond that the
 * client gets a "busy" reply (written without waiting: the reply is small
 * and the socket buffer empty) and exit VD_EXIT_BUSY.  vd_ctl_unlisten
 * waits for the pool's jobs, so the pool outlives every job using it. */
#define CTL_MAGIC     0x31434456u /* "VDC1" */
#define CTL_MAX_REQ   (64u * 1024)
#define CTL_MAX_ARGC  256u
#define CTL_MAX_REPLY (64u << 20)
#define CTL_SERVER_MS 2000
#define CTL_CLIENT_MS (120 * 1000)

struct ctl_job {
    struct ctl_job *next; /* g_jobs, under g_jobs_lock */
    char pool_name[VD_NAME_MAX + 1];
    vd_pool *pool;
    const struct vd_ctl_hooks *hooks;
    int fd; /* the job's own */
};

/* Running jobs of every pool.  Written by the serving thread (add) and by
 * each job (remove itself); vd_ctl_unlisten waits on g_jobs_done until none
 * of its pool is left. */
static pthread_mutex_t g_jobs_lock = PTHREAD_MUTEX_INITIALIZER; /* g_jobs */
static pthread_cond_t g_jobs_done = PTHREAD_COND_INITIALIZER;
static struct ctl_job *g_jobs;

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = v;
    p[1] = v >> 8;
    p[2] = v >> 16;
    p[3] = v >> 24;
}

static uint32_t get_u32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd p = { .fd = fd, .events = events };
        if (left <= 0)
            return -ETIMEDOUT;
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* Read exactly len bytes before deadline: 0, -ETIMEDOUT, -EPIPE (peer
 * closed early) or another negative errno. */
static int read_full(int fd, void *buf, size_t len, int64_t deadline)
{
    unsigned char *p = buf;

    while (len) {
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= n;
        } else if (n == 0) {
            return -EPIPE;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int r = wait_fd(fd, POLLIN, deadline);
            if (r < 0)
                return r;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len, int64_t deadline)
{
    const unsigned char *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
        } else if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

int vd_ctl_path(const char *pool_name, char *buf, size_t len)
{
    struct sockaddr_un sa;
    int n;

    if (!pool_name || !vd_name_is_valid(pool_name))
        return -EINVAL;
    n = snprintf(buf, len, "%s/%s.sock", vd_rundir(), pool_name);
    if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    return 0;
}

static int make_addr(const char *pool_name, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    return vd_ctl_path(pool_name, sa->sun_path, sizeof(sa->sun_path));
}

/* 1 when a process accepts connections on the socket at sa, 0 when nobody
 * does (ECONNREFUSED: a stale file), negative errno otherwise. */
static int socket_is_live(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r;

    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        r = 1;
    else if (errno == EAGAIN || errno == EINPROGRESS)
        r = 1; /* backlog full: somebody listens */
    else if (errno == ECONNREFUSED)
        r = 0;
    else
        r = -errno;
    close(fd);
    return r;
}

int vd_ctl_listen(const char *pool_name)
{
    struct sockaddr_un sa;
    const char *dir = vd_rundir();
    struct stat st;
    int fd, r;

    if ((r = make_addr(pool_name, &sa)) < 0) {
        vd_log(VD_LOG_ERR, "pool '%s': control socket path in %s: %s",
               pool_name ? pool_name : "", dir, strerror(-r));
        return r;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        vd_log(VD_LOG_ERR, "pool '%s': cannot create %s: %s", pool_name, dir,
               strerror(-r));
        return r;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        vd_log(VD_LOG_ERR, "pool '%s': control socket: %s", pool_name,
               strerror(-r));
        return r;
    }
    for (int attempt = 0;; attempt++) {
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        r = -errno;
        if (r != -EADDRINUSE || attempt > 0)
            goto fail;
        /* Remove a file left by a process that died, never a live one's. */
        if (lstat(sa.sun_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': control socket %s exists and is not "
                   "a socket; remove it",
                   pool_name, sa.sun_path);
            r = -EEXIST;
            goto out_close;
        }
        int live = socket_is_live(&sa);
        if (live == 1) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': control socket %s is served by "
                   "another process; the pool is held elsewhere",
                   pool_name, sa.sun_path);
            r = -EADDRINUSE;
            goto out_close;
        }
        if (live < 0 && live != -ENOENT) {
            r = live;
            goto fail;
        }
        if (live == 0 && unlink(sa.sun_path) < 0 && errno != ENOENT) {
            r = -errno;
            goto fail;
        }
    }
    if (chmod(sa.sun_path, 0600) < 0) {
        r = -errno;
        unlink(sa.sun_path);
        goto fail;
    }
    if (listen(fd, 16) < 0) {
        r = -errno;
        unlink(sa.sun_path);
        goto fail;
    }
    return fd;
fail:
    vd_log(VD_LOG_ERR, "pool '%s': control socket %s: %s", pool_name,
           sa.sun_path, strerror(-r));
out_close:
    close(fd);
    return r;
}

void vd_ctl_close(const char *pool_name, int fd)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

    if (fd < 0)
        return;
    close(fd);
    if (vd_ctl_path(pool_name, path, sizeof(path)) == 0)
        unlink(path);
}

void vd_ctl_wait(const char *pool_name)
{
    pthread_mutex_lock(&g_jobs_lock);
    for (;;) {
        struct ctl_job *j = g_jobs;
        while (j && strcmp(j->pool_name, pool_name))
            j = j->next;
        if (!j)
            break;
        pthread_cond_wait(&g_jobs_done, &g_jobs_lock);
    }
    pthread_mutex_unlock(&g_jobs_lock);
}

void vd_ctl_unlisten(const char *pool_name, int fd)
{
    if (fd < 0)
        return;
    vd_ctl_close(pool_name, fd);
    /* The caller closes the pool next: its commands must be done. */
    vd_ctl_wait(pool_name);
}

static int send_reply(int fd, uint32_t code, const char *out, size_t outlen,
                      const char *err, size_t errlen, int64_t deadline)
{
    unsigned char h[8];
    int r;

    put_u32(h, code);
    put_u32(h + 4, outlen);
    if ((r = write_full(fd, h, 8, deadline)) < 0 ||
        (r = write_full(fd, out, outlen, deadline)) < 0)
        return r;
    put_u32(h, errlen);
    if ((r = write_full(fd, h, 4, deadline)) < 0 ||
        (r = write_full(fd, err, errlen, deadline)) < 0)
        return r;
    return 0;
}

static int reply_error(int fd, uint32_t code, int64_t deadline, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
static int reply_error(int fd, uint32_t code, int64_t deadline, const char *fmt,
                       ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof(buf), "vdlvm: ");

    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    return send_reply(fd, code, "", 0, buf, n, deadline);
}

/* Commands that may run for long (verify reads whole volumes, --wait
 * waits for a resync, vol import/export copy images): the client waits
 * for them without bound. */
static int is_long_cmd(int argc, char **argv)
{
    int i;

    if (argc < 1)
        return 0;
    if (!strcmp(argv[0], "verify"))
        return 1;
    if (argc > 1 && !strcmp(argv[0], "vol") &&
        (!strcmp(argv[1], "import") || !strcmp(argv[1], "export")))
        return 1; /* copies a whole image */
    if (!strcmp(argv[0], "resync"))
        i = 1;
    else if (argc > 1 && !strcmp(argv[0], "dev") &&
             !strcmp(argv[1], "evacuate"))
        i = 2;
    else if (argc > 1 && !strcmp(argv[0], "vol") && !strcmp(argv[1], "repair"))
        i = 2;
    else if (argc > 1 && !strcmp(argv[0], "tier") && !strcmp(argv[1], "run"))
        i = 2;
    else
        return 0;
    for (; i < argc; i++)
        if (!strcmp(argv[i], "--wait"))
            return 1;
    return 0;
}

/* Run the command and send its reply; 0 or a negative errno. */
static int run_and_reply(int fd, vd_pool *pool,
                         const struct vd_ctl_hooks *hooks, int argc,
                         char **argv)
{
    const char *pname = vd_pool_name(pool);
    char *obuf = NULL, *ebuf = NULL;
    size_t olen = 0, elen = 0;
    FILE *out = open_memstream(&obuf, &olen);
    FILE *err = open_memstream(&ebuf, &elen);
    int code, r;

    if (!out || !err) {
        if (out)
            fclose(out);
        if (err)
            fclose(err);
        free(obuf);
        free(ebuf);
        reply_error(fd, VD_EXIT_FAIL, now_ms() + CTL_SERVER_MS,
                    "control socket of pool '%s': out of memory", pname);
        return -ENOMEM;
    }
    if (hooks && hooks->before)
        hooks->before(hooks->arg);
    code = vd_admin_exec(pool, argc, argv, out, err);
    if (hooks && hooks->after)
        hooks->after(hooks->arg);
    fclose(out);
    fclose(err);
    if (!obuf || !ebuf) {
        free(obuf);
        free(ebuf);
        reply_error(fd, VD_EXIT_FAIL, now_ms() + CTL_SERVER_MS,
                    "control socket of pool '%s': out of memory", pname);
        return -ENOMEM;
    }
    /* A fresh deadline: the command itself may have taken a while. */
    r = send_reply(fd, code, obuf, olen, ebuf, elen, now_ms() + CTL_SERVER_MS);
    free(obuf);
    free(ebuf);
    return r;
}

/* On a job's thread: read the request on fd, check it and the caller, run
 * it, reply.  0 or a negative errno (the client got a reply if it could). */
static int serve_request(int fd, vd_pool *pool,
                         const struct vd_ctl_hooks *hooks)
{
    const char *pname = vd_pool_name(pool);
    unsigned char h[12];
    unsigned char *req = NULL;
    char **argv = NULL;
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    uint32_t argc, len;
    int64_t deadline = now_ms() + CTL_SERVER_MS;
    int r;

    /* Read the request even from a client we refuse, so that it gets the
     * reply instead of EPIPE on its send. */
    r = read_full(fd, h, sizeof(h), deadline);
    if (r < 0)
        goto out;
    argc = get_u32(h + 4);
    len = get_u32(h + 8);
    if (get_u32(h) != CTL_MAGIC) {
        reply_error(fd, VD_EXIT_USAGE, deadline,
                    "control socket of pool '%s': "
                    "request is not a vdlvm command (bad magic); are vdlvm "
                    "and bs_vdlvm.so of the same version?",
                    pname);
        r = -EPROTO;
        goto out;
    }
    if (len > CTL_MAX_REQ || argc == 0 || argc > CTL_MAX_ARGC || len < argc) {
        reply_error(fd, VD_EXIT_USAGE, deadline,
                    "control socket of pool '%s': "
                    "request of %u arguments in %u bytes refused; at most %u "
                    "arguments in %u bytes",
                    pname, argc, len, CTL_MAX_ARGC, CTL_MAX_REQ);
        r = -EMSGSIZE;
        goto out;
    }
    req = malloc(len);
    argv = calloc(argc + 1, sizeof(*argv));
    if (!req || !argv) {
        reply_error(fd, VD_EXIT_FAIL, deadline,
                    "control socket of pool '%s': "
                    "out of memory",
                    pname);
        r = -ENOMEM;
        goto out;
    }
    r = read_full(fd, req, len, deadline);
    if (r < 0)
        goto out;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
        r = -errno;
        reply_error(fd, VD_EXIT_FAIL, deadline,
                    "control socket of pool '%s': "
                    "cannot check the caller: %s",
                    pname, strerror(-r));
        goto out;
    }
    if (cred.uid != 0 && cred.uid != geteuid()) {
        vd_log(VD_LOG_WARN,
               "pool '%s': control socket: refused uid %u "
               "(pid %d)",
               pname, (unsigned)cred.uid, (int)cred.pid);
        reply_error(fd, VD_EXIT_FAIL, deadline,
                    "pool '%s': uid %u may not "
                    "administer this pool; run vdlvm as root",
                    pname, (unsigned)cred.uid);
        r = -EPERM;
        goto out;
    }

    /* Split the arguments: exactly argc NUL-terminated strings. */
    {
        uint32_t n = 0, start = 0;
        for (uint32_t i = 0; i < len; i++)
            if (req[i] == 0) {
                if (n < argc)
                    argv[n] = (char *)req + start;
                n++;
                start = i + 1;
            }
        if (n != argc || start != len) {
            reply_error(fd, VD_EXIT_USAGE, deadline,
                        "control socket of pool "
                        "'%s': garbled request (%u arguments announced, %u "
                        "found)",
                        pname, argc, n);
            r = -EPROTO;
            goto out;
        }
    }
    r = run_and_reply(fd, pool, hooks, (int)argc, argv);
out:
    if (r < 0 && r != -EPROTO && r != -EMSGSIZE && r != -EPERM)
        vd_log(VD_LOG_WARN, "pool '%s': control socket request: %s (ignored)",
               pname, strerror(-r));
    free(argv);
    free(req);
    return r;
}

static void *job_main(void *arg)
{
    struct ctl_job *j = arg;

    serve_request(j->fd, j->pool, j->hooks);
    close(j->fd);
    pthread_mutex_lock(&g_jobs_lock);
    for (struct ctl_job **pp = &g_jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    pthread_cond_broadcast(&g_jobs_done);
    pthread_mutex_unlock(&g_jobs_lock);
    free(j);
    return NULL;
}

/* Serving thread: a refusal that must not wait.  Drains what the client
 * already sent (so that it reads our reply rather than a reset), then
 * writes the reply if the socket takes it at once. */
static void refuse_now(int fd, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse_now(int fd, uint32_t code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof(buf), "vdlvm: ");

    while (recv(fd, buf + 100, sizeof(buf) - 100, MSG_DONTWAIT) > 0)
        ;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    send_reply(fd, code, "", 0, buf, n, now_ms());
}

int vd_ctl_serve_one(int listen_fd, vd_pool *pool,
                     const struct vd_ctl_hooks *hooks)
{
    const char *pname = pool ? vd_pool_name(pool) : "?";
    struct ctl_job *j;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t tid;
    int fd, r, running = 0;

    fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
            errno == ECONNABORTED)
            return 0; /* the client went away: nothing to do */
        r = -errno;
        vd_log(VD_LOG_WARN, "pool '%s': control socket accept: %s", pname,
               strerror(-r));
        return r;
    }
    if (!pool) {
        refuse_now(fd, VD_EXIT_FAIL, "control socket: no pool is open");
        close(fd);
        return -EINVAL;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        refuse_now(fd, VD_EXIT_FAIL,
                   "control socket of pool '%s': out of "
                   "memory",
                   pname);
        close(fd);
        return -ENOMEM;
    }
    snprintf(j->pool_name, sizeof(j->pool_name), "%s", pname);
    j->pool = pool;
    j->hooks = hooks;
    j->fd = fd;
    pthread_mutex_lock(&g_jobs_lock);
    for (struct ctl_job *o = g_jobs; o; o = o->next)
        running += !strcmp(o->pool_name, j->pool_name);
    if (running < VD_CTL_MAX_JOBS) {
        j->next = g_jobs;
        g_jobs = j;
    }
    pthread_mutex_unlock(&g_jobs_lock);
    if (running >= VD_CTL_MAX_JOBS) {
        vd_log(VD_LOG_WARN,
               "pool '%s': control socket: %d commands running; "
               "one more refused (busy)",
               pname, running);
        refuse_now(fd, VD_EXIT_BUSY,
                   "pool '%s': busy: the tgtd holding it "
                   "already runs %d commands for it (at most %d); retry when "
                   "one has finished",
                   pname, running, VD_CTL_MAX_JOBS);
        close(fd);
        free(j);
        return -EBUSY;
    }
    /* Jobs never take signals meant for the serving thread (tgtd's
     * signalfd): create them with every signal blocked. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    r = -pthread_create(&tid, &attr, job_main, j);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        pthread_mutex_lock(&g_jobs_lock);
        for (struct ctl_job **pp = &g_jobs; *pp; pp = &(*pp)->next)
            if (*pp == j) {
                *pp = j->next;
                break;
            }
        pthread_cond_broadcast(&g_jobs_done);
        pthread_mutex_unlock(&g_jobs_lock);
        vd_log(VD_LOG_WARN,
               "pool '%s': control socket: cannot start a "
               "thread for a command: %s",
               pname, strerror(-r));
        refuse_now(fd, VD_EXIT_BUSY,
                   "pool '%s': the tgtd holding it cannot "
                   "start a thread for this command: %s; retry later",
                   pname, strerror(-r));
        close(fd);
        free(j);
        return r;
    }
    return 0; /* the job owns fd now */
}

int vd_ctl_call(const char *pool_name, int argc, char **argv, FILE *out,
                FILE *err, int *exit_code)
{
    struct sockaddr_un sa;
    struct timeval tv = { .tv_sec = CTL_SERVER_MS / 1000 };
    unsigned char *req = NULL, h[12];
    char *buf = NULL;
    size_t len = 0;
    int64_t deadline;
    uint32_t code, n;
    int fd = -1, r;

    if ((r = make_addr(pool_name, &sa)) < 0)
        return r;
    if (argc < 1 || (uint32_t)argc > CTL_MAX_ARGC)
        return -E2BIG;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    if (len > CTL_MAX_REQ)
        return -E2BIG;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Bounds connect() too, should the server's backlog be full. */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = errno == EAGAIN ? -ETIMEDOUT : -errno;
        goto out;
    }
    req = malloc(len + 12);
    if (!req) {
        r = -ENOMEM;
        goto out;
    }
    put_u32(req, CTL_MAGIC);
    put_u32(req + 4, argc);
    put_u32(req + 8, len);
    for (int i = 0, off = 12; i < argc; i++) {
        size_t l = strlen(argv[i]) + 1;
        memcpy(req + off, argv[i], l);
        off += l;
    }
    deadline = is_long_cmd(argc, argv) ? INT64_MAX : now_ms() + CTL_CLIENT_MS;
    r = write_full(fd, req, len + 12, deadline);
    if (r < 0 && r != -EPIPE && r != -ECONNRESET)
        goto out;
    /* On EPIPE the server refused early; its reply may still be readable. */
    r = read_full(fd, h, 8, deadline);
    if (r < 0)
        goto reply_fail;
    code = get_u32(h);
    n = get_u32(h + 4);
    for (int part = 0; part < 2; part++) {
        if (n > CTL_MAX_REPLY) {
            r = -EPROTO;
            goto reply_fail;
        }
        buf = malloc(n ? n : 1);
        if (!buf) {
            r = -ENOMEM;
            goto out;
        }
        if ((r = read_full(fd, buf, n, deadline)) < 0)
            goto reply_fail;
        fwrite(buf, 1, n, part ? err : out);
        free(buf);
        buf = NULL;
        if (part == 0) {
            if ((r = read_full(fd, h, 4, deadline)) < 0)
                goto reply_fail;
            n = get_u32(h);
        }
    }
    fflush(out);
    fflush(err);
    *exit_code = code > 255 ? VD_EXIT_FAIL : (int)code;
    r = 0;
    goto out;
reply_fail:
    /* Connected, so a live server took the request: never report this as
     * "nobody serves the pool", which would make the caller open it. */
    if (r == -ENOENT || r == -ECONNREFUSED)
        r = -EPROTO;
out:
    free(buf);
    free(req);
    if (fd >= 0)
        close(fd);
    return r;
}

/* ---- registry of pool definitions --------------------------------------- */
