/* vdlvm admin: `vol import` and `vol export` (issue 11): disk image files
 * to and from thin volumes.
 *
 * Import makes a new thin volume and writes only the chunks of the image
 * that hold a non-zero byte, so a sparse or mostly empty image allocates
 * what it holds.  A raw image is read directly (SEEK_DATA skips its
 * holes); any other format is first converted by `qemu-img convert -O raw`
 * into a sparse temporary file beside the image (or in $TMPDIR when that
 * folder is not writable), which is then read the same way and removed.
 * Export is the reverse: the volume's mapped ranges (vd_vol_lba_status)
 * are read and their non-zero blocks written into a sparse raw file,
 * converted by qemu-img when another format is asked for; FILE gets its
 * content under a temporary name in its own folder and is renamed at the
 * end, so it appears complete or not at all.
 *
 * Never half-created: once import has created the volume, every failure
 * (a read of the image, a write, qemu-img) removes it again before the
 * command returns.  What cannot be caught (kill -9 of the process running
 * the command, vdlvm or tgtd) is caught at the next pool open: the volume
 * is created with an import mark (an empty reserved snapshot, in the
 * create's own commit: vd_vol_import_create) that stays until its data is
 * flushed, and a pool open removes marked volumes (only one process holds
 * a pool).  A re-run then starts afresh.  While marked, every other
 * command is refused the volume (exit 4): no LUN, export, clone or
 * snapshot ever sees a half image.
 *
 * Where it runs: like every admin command, on the thread of vd_admin_exec,
 * in vdlvm or in the tgtd that holds the pool (the control socket counts
 * import and export as long commands).  Paths are absolute: vdlvm makes a
 * relative FILE absolute before it sends the command (vd_admin_abs_file).
 * qemu-img runs as a child process (posix_spawn, signals unblocked in the
 * child), waited for on this thread only; nothing here is shared between
 * threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>

#include "admin_int.h"

extern char **environ;

#define IO_BUF (4u << 20) /* bytes per read of the image or the volume */

/* Formats qemu-img reads (import) and writes (export).  A fixed list, so
 * that a typo is a usage error before anything is created. */
static const char *const g_read_fmts[] = { "raw",  "qcow2",     "vmdk", "vdi",
                                           "vhdx", "vpc",       "qed",  "qcow",
                                           "dmg",  "parallels", NULL };
static const char *const g_write_fmts[] = { "raw", "qcow2", "vmdk",
                                            "vdi", "vhdx",  "vpc",
                                            "qed", "qcow",  NULL };

static int in_list(const char *const *l, const char *s)
{
    for (; *l; l++)
        if (!strcmp(*l, s))
            return 1;
    return 0;
}

int admin_opt_format(const char *cmdname, const char *name, const char *val,
                     struct cmd_args *a, FILE *err)
{
    if (!in_list(g_read_fmts, val)) {
        admin_msg(err,
                  "%s: --format '%s' is unknown; use raw, qcow2, vmdk, vdi, "
                  "vhdx, vpc, qed, qcow, dmg or parallels",
                  cmdname, val);
        return VD_EXIT_USAGE;
    }
    a->format = val;
    return 0;
}

int admin_image_check(struct cmd_args *a, const char *cmdname, FILE *err)
{
    int export = !strcmp(a->spec->w2, "export");

    if (export && a->format && !in_list(g_write_fmts, a->format)) {
        admin_msg(err,
                  "%s: --format '%s' can be read but not written; use raw, "
                  "qcow2, vmdk, vdi, vhdx, vpc, qed or qcow",
                  cmdname, a->format);
        return VD_EXIT_USAGE;
    }
    return 0;
}

int vd_admin_abs_file(int argc, char **argv, char **to_free)
{
    struct cmd_args a;
    FILE *null = fopen("/dev/null", "w");
    int rc;

    *to_free = NULL;
    if (!null)
        return -errno;
    rc = admin_parse_cmd(argc, argv, &a, null, null);
    fclose(null);
    if (rc >= 0 || !(a.spec->flags & F_FILE) || !a.file || a.file[0] == '/')
        return 0;
    for (int i = 0; i < argc; i++) {
        if (argv[i] != a.file)
            continue;
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return -errno;
        if (asprintf(to_free, "%s/%s", cwd, a.file) < 0) {
            *to_free = NULL;
            return -ENOMEM;
        }
        argv[i] = *to_free;
        return 0;
    }
    return 0;
}

/* ---- qemu-img ------------------------------------------------------------ */

/* Called with each piece of the child's stdout as it arrives. */
typedef void (*out_fn)(void *arg, const char *buf, size_t len);

/* Run argv (argv[0] looked up in PATH), stdin /dev/null.  Its stdout is
 * collected into *out (malloc'd, NUL-terminated; may be NULL) and also
 * handed to fn; its stderr into *errout (malloc'd; may be NULL).  Returns
 * its exit status (0-255), 128 + a signal that ended it, or a negative
 * errno when it could not be run (-ENOENT: not installed). */
static int run_child(char *const argv[], char **out, char **errout, out_fn fn,
                     void *arg)
{
    int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, def;
    char *buf[2] = { NULL, NULL };
    size_t len[2] = { 0, 0 }, cap[2] = { 0, 0 };
    pid_t pid;
    int r, status;

    if (out)
        *out = NULL;
    if (errout)
        *errout = NULL;
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        r = -errno;
        goto out_pipes;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawnattr_init(&at);
    /* a job thread of tgtd blocks every signal: not so the child */
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    r = -posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (r < 0)
        goto out_pipes;

    struct pollfd pf[2] = { { .fd = po[0], .events = POLLIN },
                            { .fd = pe[0], .events = POLLIN } };
    int open_fds = 2;
    while (open_fds) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int k = 0; k < 2; k++) {
            if (pf[k].fd < 0 || !pf[k].revents)
                continue;
            char tmp[4096];
            ssize_t n = read(pf[k].fd, tmp, sizeof(tmp));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                pf[k].fd = -1;
                open_fds--;
                continue;
            }
            if (k == 0 && fn)
                fn(arg, tmp, (size_t)n);
            if (len[k] + n + 1 > cap[k] && len[k] < (1u << 20)) {
                size_t nc = (len[k] + n + 1) * 2;
                char *nb = realloc(buf[k], nc);
                if (nb) {
                    buf[k] = nb;
                    cap[k] = nc;
                }
            }
            if (len[k] + n + 1 <= cap[k]) {
                memcpy(buf[k] + len[k], tmp, n);
                len[k] += n;
                buf[k][len[k]] = 0;
            }
        }
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            r = -errno;
            goto out_pipes;
        }
    }
    r = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
out_pipes:
    for (int k = 0; k < 2; k++) {
        if (po[k] >= 0)
            close(po[k]);
        if (pe[k] >= 0)
            close(pe[k]);
    }
    if (out)
        *out = buf[0];
    else
        free(buf[0]);
    if (errout)
        *errout = buf[1];
    else
        free(buf[1]);
    return r;
}

/* The first line of qemu-img's message, without its "qemu-img: " prefix,
 * in buf (for our own message). */
static void first_line(const char *s, char *buf, size_t len)
{
    if (!s)
        s = "";
    if (!strncmp(s, "qemu-img: ", 10))
        s += 10;
    size_t n = strcspn(s, "\n");
    if (n >= len)
        n = len - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    if (!n)
        snprintf(buf, len, "no message");
}

/* `qemu-img info` of file: its format (fmt: the one asked for, NULL:
 * detect) into detected, its virtual size.  0, -ENOENT (no qemu-img), or
 * -EINVAL after a message on err. */
static int image_info(const char *file, const char *fmt, char *detected,
                      size_t dlen, uint64_t *vsize, FILE *err)
{
    char *argv[10];
    char *out = NULL, *eout = NULL, line[300];
    const char *p;
    int r, k = 0;

    argv[k++] = "qemu-img";
    argv[k++] = "info";
    argv[k++] = "--output=json";
    argv[k++] = "-U"; /* also while another process has it open */
    if (fmt) {
        argv[k++] = "-f";
        argv[k++] = (char *)fmt;
    }
    argv[k++] = "--";
    argv[k++] = (char *)file;
    argv[k] = NULL;
    r = run_child(argv, &out, &eout, NULL, NULL);
    if (r == -ENOENT)
        goto done;
    if (r != 0) {
        first_line(eout, line, sizeof(line));
        if (r < 0)
            admin_msg(err, "image '%s': cannot run qemu-img: %s", file,
                      strerror(-r));
        else
            admin_msg(err, "image '%s': not readable as %s: %s", file,
                      fmt ? fmt : "a disk image", line);
        r = -EINVAL;
        goto done;
    }
    r = -EINVAL;
    if (!out || !(p = strstr(out, "\"virtual-size\": ")) ||
        sscanf(p + 16, "%" SCNu64, vsize) != 1 ||
        !(p = strstr(out, "\"format\": \""))) {
        admin_msg(err, "image '%s': qemu-img info gave no format and size",
                  file);
        goto done;
    }
    p += 11;
    size_t n = strcspn(p, "\"");
    if (n >= dlen)
        n = dlen - 1;
    memcpy(detected, p, n);
    detected[n] = 0;
    r = 0;
done:
    free(out);
    free(eout);
    return r;
}

/* qemu-img -p writes "    (12.34/100%)\r": the progress of its copy. */
struct conv_progress {
    struct admin_progress *pg;
    uint64_t total;
    char tail[32];
};

static void conv_out(void *arg, const char *buf, size_t len)
{
    struct conv_progress *cp = arg;
    const char *open_ = NULL;

    for (size_t i = len; i-- > 0;)
        if (buf[i] == '(') {
            open_ = buf + i;
            break;
        }
    if (!open_)
        return;
    double pct;
    if (sscanf(open_, "(%lf/100%%)", &pct) == 1 && pct >= 0 && pct <= 100)
        admin_progress_update(cp->pg, (uint64_t)(cp->total * (pct / 100.0)),
                              cp->total);
}

/* qemu-img convert src (of src_fmt) to dst (dst_fmt), with progress on
 * err; 0 or -EIO after a message. */
static int image_convert(const char *src, const char *src_fmt, const char *dst,
                         const char *dst_fmt, uint64_t total, const char *label,
                         FILE *err)
{
    char *argv[] = {
        "qemu-img", "convert",       "-p", "-f",        (char *)src_fmt,
        "-O",       (char *)dst_fmt, "--", (char *)src, (char *)dst,
        NULL
    };
    char *eout = NULL, line[300];
    struct admin_progress pg;
    struct conv_progress cp = { .pg = &pg, .total = total };
    int r;

    admin_progress_start(&pg, err, label, total, -1);
    r = run_child(argv, NULL, &eout, conv_out, &cp);
    if (r != 0) {
        admin_progress_end(&pg, "failed");
        first_line(eout, line, sizeof(line));
        if (r < 0)
            admin_msg(err, "image '%s': cannot run qemu-img: %s%s", src,
                      strerror(-r), r == -ENOENT ? "; install qemu-utils" : "");
        else
            admin_msg(err, "image '%s': qemu-img convert to %s failed: %s", src,
                      dst_fmt, line);
        free(eout);
        return -EIO;
    }
    admin_progress_update(&pg, total, total);
    admin_progress_end(&pg, "converted");
    free(eout);
    return 0;
}

/* ---- temporary files ----------------------------------------------------- */

/* A new empty file beside path (same folder: rename works) named
 * ".NAME.vdlvm-XXXXXX", or, when alt and that folder refuses, in $TMPDIR
 * (or /var/tmp).  Its name into buf; the open fd, or a negative errno. */
static int make_temp(const char *path, int alt, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dlen = slash ? (int)(slash - path) : 1;
    int fd;

    if (snprintf(buf, len, "%.*s/.%s.vdlvm-XXXXXX", dlen, slash ? path : ".",
                 base) >= (int)len)
        return -ENAMETOOLONG;
    fd = mkostemp(buf, O_CLOEXEC);
    if (fd >= 0 || !alt)
        return fd >= 0 ? fd : -errno;
    const char *td = getenv("TMPDIR");
    if (!td || td[0] != '/')
        td = "/var/tmp";
    if (snprintf(buf, len, "%s/vdlvm-import-XXXXXX", td) >= (int)len)
        return -ENAMETOOLONG;
    fd = mkostemp(buf, O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

static int all_zero(const unsigned char *p, size_t n)
{
    if (n < 16) {
        for (size_t i = 0; i < n; i++)
            if (p[i])
                return 0;
        return 1;
    }
    for (int i = 0; i < 16; i++)
        if (p[i])
            return 0;
    return !memcmp(p, p + 16, n - 16);
}

static double since_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* pread all of len at off (short only at end of file: the rest zeroed). */
static int pread_full(int fd, unsigned char *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0) {
            memset(buf + got, 0, len - got);
            break;
        }
        got += n;
    }
    return 0;
}

static int pwrite_full(int fd, const unsigned char *buf, size_t len,
                       uint64_t off)
{
    size_t put = 0;
    while (put < len) {
        ssize_t n = pwrite(fd, buf + put, len - put, (off_t)(off + put));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        put += n;
    }
    return 0;
}

/* ---- import -------------------------------------------------------------- */

/* Tests only (tests/integration/test-image.sh): with VDLVM_TEST_IMPORT_HOLD
 * naming a folder that holds a file "hold", an import stops after its
 * first buffer, creates "held" there and waits while "hold" exists (so a
 * test can kill it mid-way).  Unset in production. */
static void test_hold(void)
{
    const char *dir = getenv("VDLVM_TEST_IMPORT_HOLD");
    char hold[PATH_MAX], held[PATH_MAX];

    if (!dir || !*dir)
        return;
    snprintf(hold, sizeof(hold), "%s/hold", dir);
    snprintf(held, sizeof(held), "%s/held", dir);
    if (access(hold, F_OK) != 0)
        return;
    int fd = open(held, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
    while (access(hold, F_OK) == 0)
        usleep(10000);
}

/* Copy the raw image fd (size bytes) into vol: each block of blk bytes
 * that holds a non-zero byte is written, runs of them in one write.
 * *written: bytes written.  0, or a negative errno after a message. */
static int copy_in(int fd, uint64_t size, int seekable, vd_vol *vol,
                   uint64_t blk, const char *file, const char *label,
                   uint64_t *written, FILE *err)
{
    uint64_t bufsz = blk > IO_BUF ? blk : IO_BUF;
    unsigned char *buf = aligned_alloc(4096, bufsz);
    struct admin_progress pg;
    uint64_t off = 0;
    int r = 0;

    *written = 0;
    if (!buf)
        return -ENOMEM;
    admin_progress_start(&pg, err, label, size, -1);
    while (off < size) {
        if (seekable) { /* skip holes, a block at a time */
            off_t d = lseek(fd, (off_t)off, SEEK_DATA);
            if (d < 0 && errno == ENXIO)
                break; /* nothing but a hole to the end */
            if (d > (off_t)off)
                off = (uint64_t)d / blk * blk;
            if (off >= size)
                break;
        }
        uint64_t n = size - off < bufsz ? size - off : bufsz;
        if ((r = pread_full(fd, buf, n, off)) < 0) {
            admin_msg(err, "image '%s': read at byte %" PRIu64 " failed: %s",
                      file, off, strerror(-r));
            goto out;
        }
        for (uint64_t i = 0; i < n;) {
            uint64_t b = n - i < blk ? n - i : blk;
            if (all_zero(buf + i, b)) {
                i += b;
                continue;
            }
            uint64_t j = i + b;
            while (j < n) {
                uint64_t c = n - j < blk ? n - j : blk;
                if (all_zero(buf + j, c))
                    break;
                j += c;
            }
            r = vd_vol_pwrite(vol, buf + i, j - i, off + i, 0);
            if (r < 0) {
                admin_msg(err,
                          "volume '%s': write at byte %" PRIu64 " failed: %s",
                          vd_vol_name(vol), off + i, strerror(-r));
                goto out;
            }
            *written += j - i;
            i = j;
        }
        if (!off)
            test_hold();
        off += n;
        admin_progress_update(&pg, off, size);
    }
    if ((r = vd_vol_flush(vol)) < 0)
        admin_msg(err, "volume '%s': flush failed: %s", vd_vol_name(vol),
                  strerror(-r));
out:
    if (r == 0)
        admin_progress_update(&pg, size, size);
    admin_progress_end(&pg, r == 0 ? "imported" : "failed");
    free(buf);
    return r;
}

int admin_cmd_vol_import(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    const char *file = a->file;
    char fmt[32], tmp[PATH_MAX] = "", label[200], s1[32], s2[32];
    struct vd_vol_info vi;
    struct timespec t0;
    struct stat st;
    uint64_t vsize = 0, size, written = 0;
    vd_vol *vol = NULL;
    int fd = -1, r, created = 0, marked = 0, code = VD_EXIT_FAIL;

    /* vdlvm makes FILE absolute (vd_admin_abs_file) after the usage
     * check, before the command runs */
    if (file[0] != '/') {
        admin_msg(err, "vol %s: FILE '%s' is not an absolute path", a->spec->w2,
                  file);
        return VD_EXIT_USAGE;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* everything that can be refused is, before the volume exists */
    if (vd_vol_get_info(pool, a->vol, &vi) == 0) {
        /* one being imported: the open says so (and is refused) */
        vd_vol *busy = vi.thin ? vd_vol_open(pool, a->vol) : NULL;
        if (vi.thin && !busy && errno == EBUSY)
            return VD_EXIT_BUSY;
        vd_vol_close(busy);
        admin_msg(err,
                  "volume '%s/%s': already exists; import into a new name, "
                  "or remove it first",
                  a->pool, a->vol);
        return VD_EXIT_FAIL;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        admin_msg(err, "image '%s': cannot open: %s", file, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        admin_msg(err, "image '%s': not a regular file or block device", file);
        goto fail;
    }
    r = image_info(file, a->format, fmt, sizeof(fmt), &vsize, err);
    if (r == -ENOENT) { /* no qemu-img: raw only */
        if (a->format && strcmp(a->format, "raw")) {
            admin_msg(err,
                      "image '%s': --format %s needs qemu-img; install "
                      "qemu-utils",
                      file, a->format);
            goto fail;
        }
        snprintf(fmt, sizeof(fmt), "raw");
    } else if (r < 0) {
        goto fail;
    }
    if (!strcmp(fmt, "raw")) {
        vsize = (uint64_t)st.st_size;
        if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &vsize) < 0) {
            admin_msg(err, "image '%s': cannot get its size: %s", file,
                      strerror(errno));
            goto fail;
        }
    }
    if (vsize == 0) {
        admin_msg(err, "image '%s': empty (0 bytes); nothing to import", file);
        goto fail;
    }
    size = (vsize + 511) / 512 * 512;
    if (a->given & O_SIZE) {
        admin_fmt_size(vsize, s1, sizeof(s1));
        if (a->size < vsize) {
            admin_msg(err,
                      "vol import: --size is smaller than the image '%s' "
                      "(%s, %" PRIu64 " bytes)",
                      file, s1, vsize);
            close(fd);
            return VD_EXIT_USAGE;
        }
        size = a->size;
    }

    /* not raw: a sparse raw copy first */
    if (strcmp(fmt, "raw")) {
        int tfd = make_temp(file, 1, tmp, sizeof(tmp));
        if (tfd < 0) {
            admin_msg(err,
                      "image '%s': cannot make a temporary file beside it "
                      "or in $TMPDIR: %s",
                      file, strerror(-tfd));
            tmp[0] = 0;
            goto fail;
        }
        close(tfd);
        snprintf(label, sizeof(label), "convert %s (%s)", file, fmt);
        if (image_convert(file, fmt, tmp, "raw", vsize, label, err) < 0)
            goto fail;
        close(fd);
        fd = open(tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            admin_msg(err, "image '%s': cannot open its raw copy %s: %s", file,
                      tmp, strerror(errno));
            goto fail;
        }
    }

    /* created marked (one commit) and open: until the mark goes, no one
     * else opens, exports or clones it, and a pool open removes it (its
     * importer was killed) */
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.thin = 1;
    r = vd_vol_import_create(pool, a->vol, size, &o, &vol);
    if (r < 0) {
        code = admin_vol_fail(err, r, a->pool, a->vol, "import");
        goto fail_keep_code;
    }
    created = marked = 1;
    if (vd_vol_get_info(pool, a->vol, &vi) < 0 || !vi.thin) {
        admin_msg(err, "volume '%s/%s': created, but not thin", a->pool,
                  a->vol);
        goto fail;
    }
    snprintf(label, sizeof(label), "import %s/%s", a->pool, a->vol);
    r = copy_in(fd, vsize, S_ISREG(st.st_mode) || tmp[0], vol,
                vi.chunk_size ? vi.chunk_size : 65536, file, label, &written,
                err);
    vd_vol_close(vol);
    vol = NULL;
    if (r < 0)
        goto fail;
    /* the data is durable (copy_in flushed): whole from now on */
    r = vd_vol_import_mark(pool, a->vol, 0);
    if (r < 0) {
        code = admin_vol_fail(err, r, a->pool, a->vol, "import");
        goto fail_keep_code;
    }
    marked = 0;
    close(fd);
    if (tmp[0])
        unlink(tmp);
    admin_fmt_size(size, s1, sizeof(s1));
    admin_fmt_size(written, s2, sizeof(s2));
    fprintf(out,
            "volume '%s/%s': imported from '%s' (%s, %s): %s of non-zero "
            "data (%" PRIu64 " bytes) written in %.1f s\n",
            a->pool, a->vol, file, fmt, s1, s2, written, since_s(&t0));
    return VD_EXIT_OK;

fail:
    code = VD_EXIT_FAIL;
fail_keep_code:
    if (vol)
        vd_vol_close(vol);
    if (created) {
        /* marked (the usual case): the volume and its mark in one record */
        r = marked ? vd_vol_import_abort(pool, a->vol)
                   : vd_vol_remove(pool, a->vol);
        if (r < 0)
            admin_msg(err,
                      "volume '%s/%s': could not be removed after the failed "
                      "import: %s; remove it with 'vdlvm vol remove %s/%s'",
                      a->pool, a->vol, strerror(-r), a->pool, a->vol);
        else
            admin_msg(err, "volume '%s/%s': removed again (import failed)",
                      a->pool, a->vol);
    }
    if (fd >= 0)
        close(fd);
    if (tmp[0])
        unlink(tmp);
    return code == VD_EXIT_OK ? VD_EXIT_FAIL : code;
}

/* ---- export -------------------------------------------------------------- */

/* Write vol's content into the raw file fd (already size bytes, all
 * hole): the mapped ranges, blocks of blk bytes holding a non-zero byte.
 * 0, or a negative errno after a message. */
static int copy_out(vd_vol *vol, uint64_t size, int fd, uint64_t blk,
                    const char *file, const char *label, uint64_t *written,
                    FILE *err)
{
    unsigned char *buf = aligned_alloc(4096, IO_BUF);
    struct admin_progress pg;
    uint64_t off = 0;
    int r = 0;

    *written = 0;
    if (!buf)
        return -ENOMEM;
    admin_progress_start(&pg, err, label, size, -1);
    while (off < size) {
        uint64_t run = 0;
        int mapped = 1;
        r = vd_vol_lba_status(vol, off, &run, &mapped);
        if (r < 0 || run == 0) { /* not known: read it */
            mapped = 1;
            run = size - off;
        }
        if (run > size - off)
            run = size - off;
        if (!mapped) {
            off += run;
            admin_progress_update(&pg, off, size);
            continue;
        }
        uint64_t n = run < IO_BUF ? run : IO_BUF;
        if ((r = vd_vol_pread(vol, buf, n, off)) < 0) {
            admin_msg(err, "volume '%s': read at byte %" PRIu64 " failed: %s",
                      vd_vol_name(vol), off, strerror(-r));
            goto out;
        }
        for (uint64_t i = 0; i < n; i += blk) {
            uint64_t b = n - i < blk ? n - i : blk;
            if (all_zero(buf + i, b))
                continue;
            if ((r = pwrite_full(fd, buf + i, b, off + i)) < 0) {
                admin_msg(err, "image '%s': write failed: %s", file,
                          strerror(-r));
                goto out;
            }
            *written += b;
        }
        off += n;
        admin_progress_update(&pg, off, size);
    }
    if (fsync(fd) < 0) {
        r = -errno;
        admin_msg(err, "image '%s': fsync failed: %s", file, strerror(-r));
    }
out:
    admin_progress_end(&pg, r == 0 ? "exported" : "failed");
    free(buf);
    return r;
}

int admin_cmd_vol_export(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    const char *file = a->file;
    const char *fmt = a->format ? a->format : "raw";
    char name[2 * VD_NAME_MAX + 2], what[2 * VD_NAME_MAX + 80];
    char raw[PATH_MAX] = "", dst[PATH_MAX] = "", label[300], s1[32], s2[32];
    struct timespec t0;
    struct stat st;
    uint64_t size, written = 0;
    vd_vol *vol;
    int fd = -1, r;

    /* vdlvm makes FILE absolute (vd_admin_abs_file) after the usage
     * check, before the command runs */
    if (file[0] != '/') {
        admin_msg(err, "vol %s: FILE '%s' is not an absolute path", a->spec->w2,
                  file);
        return VD_EXIT_USAGE;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(name, sizeof(name), "%s%s%s", a->vol, a->snap[0] ? "@" : "",
             a->snap);
    snprintf(what, sizeof(what), "%s '%s/%s'",
             a->snap[0] ? "snapshot" : "volume", a->pool, name);
    if (lstat(file, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            admin_msg(err,
                      "image '%s': exists and is not a regular file; "
                      "give another FILE",
                      file);
            return VD_EXIT_FAIL;
        }
        if (!(a->given & O_FORCE)) {
            admin_msg(err, "image '%s': exists; use --force to replace it",
                      file);
            return VD_EXIT_FAIL;
        }
    }
    vol = vd_vol_open(pool, name);
    if (!vol) {
        r = -errno;
        if (a->snap[0])
            return admin_lib_fail(err, r, "%s: open failed", what);
        return admin_vol_fail(err, r, a->pool, name, "export");
    }
    size = vd_vol_size(vol);
    fd = make_temp(file, 0, raw, sizeof(raw));
    if (fd < 0) {
        admin_msg(err, "image '%s': cannot create a file in its folder: %s",
                  file, strerror(-fd));
        raw[0] = 0;
        goto fail;
    }
    if (fchmod(fd, 0644) < 0 || ftruncate(fd, (off_t)size) < 0) {
        admin_msg(err, "image '%s': cannot size it to %" PRIu64 " bytes: %s",
                  file, size, strerror(errno));
        goto fail;
    }
    snprintf(label, sizeof(label), "export %s/%s", a->pool, name);
    r = copy_out(vol, size, fd, 4096, file, label, &written, err);
    vd_vol_close(vol);
    vol = NULL;
    if (r < 0)
        goto fail;
    close(fd);
    fd = -1;
    if (strcmp(fmt, "raw")) {
        int dfd = make_temp(file, 0, dst, sizeof(dst));
        if (dfd < 0) {
            admin_msg(err, "image '%s': cannot create a file in its folder: %s",
                      file, strerror(-dfd));
            dst[0] = 0;
            goto fail;
        }
        close(dfd);
        snprintf(label, sizeof(label), "convert to %s", fmt);
        if (image_convert(raw, "raw", dst, fmt, size, label, err) < 0)
            goto fail;
        unlink(raw);
        raw[0] = 0;
        int sfd = open(dst, O_RDONLY | O_CLOEXEC);
        if (sfd >= 0) {
            fsync(sfd);
            close(sfd);
        }
    }
    if (rename(dst[0] ? dst : raw, file) < 0) {
        admin_msg(err, "image '%s': rename from %s failed: %s", file,
                  dst[0] ? dst : raw, strerror(errno));
        goto fail;
    }
    admin_fmt_size(size, s1, sizeof(s1));
    admin_fmt_size(written, s2, sizeof(s2));
    fprintf(out,
            "%s: exported to '%s' (%s, %s): %s of non-zero data (%" PRIu64
            " bytes) in %.1f s\n",
            what, file, fmt, s1, s2, written, since_s(&t0));
    return VD_EXIT_OK;
fail:
    if (vol)
        vd_vol_close(vol);
    if (fd >= 0)
        close(fd);
    if (raw[0])
        unlink(raw);
    if (dst[0])
        unlink(dst);
    return VD_EXIT_FAIL;
}
