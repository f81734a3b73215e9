/* vdlvm: who owns a pool of remote devices (pool/owner.c).
 *
 * The owner of a pool holds a SCSI-3 persistent reservation, type Write
 * Exclusive - Registrants Only, on every remote device, under a
 * reservation key derived from its host name (see vd_owner_key).  The
 * remote driver (pool/iscsi.c) takes or checks it at every login; these
 * are the pure parts (key derivation, naming a key, parsing PERSISTENT
 * RESERVE IN data), so that they can be unit-tested without a target.
 *
 * Only the pool sources and unit tests include this.  Every function is
 * thread-safe (no shared state).
 */
#ifndef VD_OWNER_H
#define VD_OWNER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* This host's name as vdlvm uses it (initiator name, reservation key):
 * gethostname() lower-cased, reduced to [a-z0-9.-]; "localhost" if that
 * leaves nothing. */
void vd_owner_host(char *buf, size_t len);

/* The reservation key of a host (host as vd_owner_host gives it).  Never
 * 0.  A name of at most 7 characters is the key itself ('V' then the name,
 * NUL-padded), so another host can name the holder from the key alone
 * (tgt has no READ FULL STATUS); a longer name is hashed (FNV-1a, 'H' then
 * 56 bits).  Stable across restarts of the same host. */
uint64_t vd_owner_key(const char *host);

/* Describe the holder of key for a message: "host 'nodea' (reservation key
 * 0x...)" or "a host with reservation key 0x...". */
void vd_owner_key_describe(uint64_t key, char *buf, size_t len);

/* PERSISTENT RESERVE IN, READ KEYS data (SPC-4 6.16.2): stores at most max
 * keys in keys and their number in *n; 0, or -EINVAL when len < 8. */
int vd_pr_parse_keys(const uint8_t *d, size_t len, uint64_t *keys, size_t max,
                     size_t *n);

/* PERSISTENT RESERVE IN, READ RESERVATION data (SPC-4 6.16.3): *held 1 and
 * *key / *type (low 4 bits of byte 21) when a reservation is held, else
 * *held 0.  0, or -EINVAL when the data is too short. */
int vd_pr_parse_reservation(const uint8_t *d, size_t len, int *held,
                            uint64_t *key, uint8_t *type);

/* SPC reservation types (byte 2 of PERSISTENT RESERVE OUT). */
enum {
    VD_PR_WRITE_EXCLUSIVE = 1,
    VD_PR_EXCLUSIVE_ACCESS = 3,
    VD_PR_WE_REGISTRANTS_ONLY = 5,
    VD_PR_EA_REGISTRANTS_ONLY = 6,
    VD_PR_WE_ALL_REGISTRANTS = 7,
    VD_PR_EA_ALL_REGISTRANTS = 8,
};

#ifdef __cplusplus
}
#endif
#endif
