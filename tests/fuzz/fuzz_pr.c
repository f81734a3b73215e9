/* vdlvm fuzzing: PERSISTENT RESERVE IN data from a remote target
 * (pool/owner.c, used by pool/iscsi.c at every login), and naming the
 * holder of a key found there (docs/fuzz.md).
 * Input: byte 0 selects READ KEYS (even) or READ RESERVATION (odd), then
 * the data the target returned. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../pool/owner.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char who[256];

    if (size < 1)
        return 0;
    /* pool/iscsi.c copies at most its buffer's size: a copy of exactly
     * the bytes the target sent lets ASan see every overread. */
    size_t len = size - 1;
    uint8_t *d = malloc(len ? len : 1);
    memcpy(d, data + 1, len);
    if (data[0] & 1) {
        int held = 0;
        uint64_t key = 0;
        uint8_t type = 0;
        if (vd_pr_parse_reservation(d, len, &held, &key, &type) == 0 && held)
            vd_owner_key_describe(key, who, sizeof(who));
    } else {
        uint64_t keys[64];
        size_t n = 0;
        size_t max = (data[0] >> 1) % 65;
        if (vd_pr_parse_keys(d, len, keys, max, &n) == 0)
            for (size_t i = 0; i < n && i < max; i++)
                vd_owner_key_describe(keys[i], who, sizeof(who));
    }
    free(d);
    return 0;
}
