/* vdlvm admin: the registry of pool definitions (STATEDIR/pools/POOL). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdadmin.h"

const char *vd_statedir(void)
{
    const char *d = getenv("VDLVM_STATEDIR");
    return d && *d ? d : "/var/lib/vdlvm";
}

static int mkdir_p(const char *dir, mode_t mode)
{
    char buf[4096];
    size_t n = strlen(dir);

    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int vd_registry_add(const char *name, const char *path)
{
    char dir[4096], link[4096 + 80], tmp[4096 + 100], abs[4096];
    int r;

    if (!vd_name_is_valid(name))
        return -EINVAL;
    if (!realpath(path, abs))
        return -errno;
    snprintf(dir, sizeof(dir), "%s/pools", vd_statedir());
    if ((r = mkdir_p(dir, 0755)) < 0)
        return r;
    snprintf(link, sizeof(link), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.%d", dir, name, (int)getpid());
    unlink(tmp);
    if (symlink(abs, tmp) < 0)
        return -errno;
    if (rename(tmp, link) < 0) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

int vd_registry_get(const char *name, char *buf, size_t len)
{
    char link[4096 + 80];
    ssize_t n;

    if (!vd_name_is_valid(name) || len == 0)
        return -EINVAL;
    snprintf(link, sizeof(link), "%s/pools/%s", vd_statedir(), name);
    n = readlink(link, buf, len - 1);
    if (n < 0)
        return -errno;
    buf[n] = 0;
    return 0;
}

int vd_registry_remove(const char *name)
{
    char link[4096 + 80];

    if (!vd_name_is_valid(name))
        return -EINVAL;
    snprintf(link, sizeof(link), "%s/pools/%s", vd_statedir(), name);
    return unlink(link) < 0 ? -errno : 0;
}
