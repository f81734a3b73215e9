/* vdlvm fuzzing: the YAML pool definition (config/config.c), and the size
 * and duration rules it shares with the command line (docs/fuzz.md).
 * Input: the bytes of a pool definition. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/vdconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vd_conf_pool *conf = NULL;
    char err[1024];

    if (vd_conf_parse("fuzz.yaml", (const char *)data, size, &conf, err,
                      sizeof(err)) == 0)
        vd_conf_free(conf);
    if (size < 128) {
        char s[128], msg[256], buf[64];
        uint64_t v;
        uint32_t ms;
        memcpy(s, data, size);
        s[size] = 0;
        if (vd_size_parse_max(s, UINT64_MAX >> (size % 64), &v, msg,
                              sizeof(msg)) == 0) {
            vd_size_format(v, buf, sizeof(buf));
            vd_size_exact(v, buf, sizeof(buf));
        }
        vd_duration_parse(s, &ms);
        vd_name_is_valid(s);
    }
    return 0;
}
