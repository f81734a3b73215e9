/* LD_PRELOAD shim for a peer tgtd whose writes can be held back
 * (tests/integration/test-remote-stale-write.sh).
 *
 * A pwrite whose first 512 bytes all equal VDLVM_SHIM_BYTE (a number, e.g.
 * 0x4f) is held while the file $VDLVM_SHIM_DIR/hold exists: the shim
 * creates $VDLVM_SHIM_DIR/held, waits for hold to go away, writes, then
 * creates $VDLVM_SHIM_DIR/landed.  Every other write goes through at once.
 * Built by the test: cc -shared -fPIC -o shim.so delay-shim.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

static int matches(const void *buf, size_t len)
{
    const char *b = getenv("VDLVM_SHIM_BYTE");
    const unsigned char *p = buf;

    if (!b || len < 512)
        return 0;
    unsigned char v = (unsigned char)strtoul(b, NULL, 0);
    for (size_t i = 0; i < 512; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static void touch(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
}

static void hold(const void *buf, size_t len)
{
    const char *dir = getenv("VDLVM_SHIM_DIR");
    char path[4096];

    if (!dir || !matches(buf, len))
        return;
    snprintf(path, sizeof(path), "%s/hold", dir);
    if (access(path, F_OK) != 0)
        return;
    touch(dir, "held");
    while (access(path, F_OK) == 0)
        usleep(10000);
}

static void landed(const void *buf, size_t len)
{
    const char *dir = getenv("VDLVM_SHIM_DIR");
    if (dir && matches(buf, len))
        touch(dir, "landed");
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    static pwrite_fn next;
    if (!next)
        next = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite64");
    hold(buf, len);
    ssize_t r = next(fd, buf, len, off);
    landed(buf, len);
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    static pwrite_fn next;
    if (!next)
        next = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
    hold(buf, len);
    ssize_t r = next(fd, buf, len, off);
    landed(buf, len);
    return r;
}
