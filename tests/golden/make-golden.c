/* Writes the golden pool image of tests/unit/pool/golden_test.cc: a pool
 * "golden" of two 8 MiB devices (d0 on node n0, d1 on node n1, extent
 * 1 MiB) with a linear volume "lin" (1 MiB) and a 2-way mirror "mir"
 * (1 MiB, region 64 KiB), each filled with a known pattern.  Run once,
 * by hand, when the format changes on purpose (never to make the test
 * pass):
 *   make lib
 *   cc -std=gnu11 -D_GNU_SOURCE -I. -o /tmp/make-golden \
 *      tests/golden/make-golden.c build/libvdlvm.a \
 *      -liscsi -lyaml -lcrypto -lblkid -lpthread
 *   /tmp/make-golden DIR && tar -C DIR -cf - d0.img d1.img | gzip -9 \
 *      > tests/golden/pool-v1.0.tar.gz
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/vdpool.h"

static void pattern(unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 31 + seed * 7 + (i >> 9));
}

int main(int argc, char **argv)
{
    static unsigned char buf[1 << 20];
    char p0[4096], p1[4096];
    struct vd_conf_dev devs[2];
    struct vd_conf_pool conf;
    struct vd_vol_opts o;
    vd_pool *p;
    vd_vol *v;

    if (argc != 2) {
        fprintf(stderr, "usage: make-golden DIR\n");
        return 2;
    }
    snprintf(p0, sizeof(p0), "%s/d0.img", argv[1]);
    snprintf(p1, sizeof(p1), "%s/d1.img", argv[1]);
    memset(devs, 0, sizeof(devs));
    devs[0] = (struct vd_conf_dev){ .name = "d0", .path = p0, .size = 8 << 20, .node = "n0" };
    devs[1] = (struct vd_conf_dev){ .name = "d1", .path = p1, .size = 8 << 20, .node = "n1" };
    conf = (struct vd_conf_pool){ .file = "golden.yaml", .name = "golden",
                                  .extent_size = 1 << 20, .ndevs = 2, .devs = devs };
    if (vd_pool_create(&conf, 0) || vd_pool_open(&conf, &p))
        return 1;
    vd_vol_opts_init(&o);
    if (vd_vol_create(p, "lin", 1 << 20, &o))
        return 1;
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    o.region_size = 64 << 10;
    if (vd_vol_create(p, "mir", 1 << 20, &o))
        return 1;
    pattern(buf, sizeof(buf), 1);
    if (!(v = vd_vol_open(p, "lin")) || vd_vol_pwrite(v, buf, sizeof(buf), 0, VD_IO_FUA))
        return 1;
    vd_vol_close(v);
    pattern(buf, sizeof(buf), 2);
    if (!(v = vd_vol_open(p, "mir")) || vd_vol_pwrite(v, buf, sizeof(buf), 0, VD_IO_FUA))
        return 1;
    if (vd_vol_flush(v))
        return 1;
    vd_vol_close(v);
    vd_pool_close(p);
    return 0;
}
