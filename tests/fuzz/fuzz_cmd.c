/* vdlvm fuzzing: an admin command line (admin/cmd.c and the commands it
 * runs), as `vdlvm` parses it (vd_admin_parse) and as the control socket
 * runs it against the pool (vd_admin_exec) (docs/fuzz.md).
 * Input: the arguments, each ended by a NUL byte (argv[0] is the command
 * word: "vol", "status", ...); at most 64 of them. */
#include <stdio.h>
#include <string.h>

#include "fuzz_admin.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    admin_pool_open();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1), *argv[65], pool_name[128];
    char *obuf = NULL, *ebuf = NULL;
    size_t olen, elen, start = 0;
    int argc = 0;
    FILE *out, *err;

    memcpy(buf, data, size);
    buf[size] = 0;
    for (size_t i = 0; i < size && argc < 64; i++)
        if (buf[i] == 0) {
            argv[argc++] = buf + start;
            start = i + 1;
        }
    if (start < size && argc < 64) /* a last argument without its NUL */
        argv[argc++] = buf + start;
    argv[argc] = NULL;
    out = open_memstream(&obuf, &olen);
    err = open_memstream(&ebuf, &elen);
    if (argc > 0 && vd_admin_parse(argc, argv, pool_name, sizeof(pool_name),
                                   out, err) == -1) {
        vd_admin_exec(g_pool, argc, argv, out, err);
        admin_pool_reset();
    }
    fclose(out);
    fclose(err);
    free(obuf);
    free(ebuf);
    free(buf);
    return 0;
}
