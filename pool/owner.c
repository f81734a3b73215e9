/* vdlvm: pool ownership across hosts (see owner.h and the header comment of
 * iscsi.c for the reservation protocol). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "owner.h"
#include "pool_int.h"

void vd_owner_host(char *buf, size_t len)
{
    char host[256] = "";
    size_t j = 0;

    if (gethostname(host, sizeof(host) - 1) < 0)
        host[0] = 0;
    host[sizeof(host) - 1] = 0;
    for (size_t i = 0; host[i] && j + 1 < len; i++) {
        char c = host[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
            c == '-')
            buf[j++] = c;
    }
    if (len)
        buf[j] = 0;
    if (!j)
        snprintf(buf, len, "localhost");
}

uint64_t vd_owner_key(const char *host)
{
    size_t l = strlen(host);
    uint64_t k;

    if (l >= 1 && l <= 7) {
        k = (uint64_t)'V' << 56;
        for (size_t i = 0; i < l; i++)
            k |= (uint64_t)(uint8_t)host[i] << (48 - 8 * i);
        return k;
    }
    k = 14695981039346656037ull; /* FNV-1a 64 */
    for (size_t i = 0; i < l; i++) {
        k ^= (uint8_t)host[i];
        k *= 1099511628211ull;
    }
    return ((uint64_t)'H' << 56) | (k & 0x00ffffffffffffffull);
}

void vd_owner_key_describe(uint64_t key, char *buf, size_t len)
{
    char name[8];
    size_t n = 0;
    int ok = (key >> 56) == 'V';

    for (int i = 0; ok && i < 7; i++) {
        char c = (char)(key >> (48 - 8 * i));
        if (!c)
            break;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '-'))
            ok = 0;
        name[n++] = c;
    }
    /* The rest must be padding. */
    for (size_t i = n; ok && i < 7; i++)
        if ((char)(key >> (48 - 8 * i)))
            ok = 0;
    name[n] = 0;
    if (ok && n)
        snprintf(buf, len, "host '%s' (reservation key 0x%016" PRIx64 ")", name,
                 key);
    else
        snprintf(buf, len, "a host with reservation key 0x%016" PRIx64, key);
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

int vd_pr_parse_keys(const uint8_t *d, size_t len, uint64_t *keys, size_t max,
                     size_t *n)
{
    size_t avail;

    *n = 0;
    if (len < 8)
        return -EINVAL;
    avail = be32(d + 4);
    if (avail > len - 8) /* truncated by the allocation length */
        avail = len - 8;
    for (size_t i = 0; i + 8 <= avail && *n < max; i += 8)
        keys[(*n)++] = be64(d + 8 + i);
    return 0;
}

int vd_pr_parse_reservation(const uint8_t *d, size_t len, int *held,
                            uint64_t *key, uint8_t *type)
{
    *held = 0;
    *key = 0;
    *type = 0;
    if (len < 8)
        return -EINVAL;
    if (be32(d + 4) == 0)
        return 0;
    if (len < 22)
        return -EINVAL;
    *held = 1;
    *key = be64(d + 8);
    *type = d[21] & 0x0f;
    return 0;
}

int vd_pool_takeover(const struct vd_conf_pool *conf)
{
    int r = 0, n = 0;

    for (size_t i = 0; i < conf->ndevs; i++) {
        const struct vd_conf_dev *c = &conf->devs[i];
        char msg[512] = "";
        int e;

        if (!c->iscsi_url)
            continue; /* local devices: the pool lock file is enough */
        n++;
        e = vd_bdev_iscsi_takeover(c, msg, sizeof(msg));
        if (e < 0) {
            vd_log(VD_LOG_ERR, "pool '%s': device '%s': takeover failed: %s",
                   conf->name, c->name, msg);
            if (!r)
                r = e;
        } else {
            vd_log(VD_LOG_WARN, "pool '%s': device '%s': %s", conf->name,
                   c->name, msg);
        }
    }
    if (!n)
        vd_log(VD_LOG_WARN,
               "pool '%s': no remote device: nothing to take "
               "over",
               conf->name);
    return r;
}
