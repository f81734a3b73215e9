/* vdlvm: encryption at rest (pool/crypt.c) — pool internals only.
 *
 * A pool with `encryption: {key_file: PATH}` has one random 512-bit data
 * key (AES-256-XTS: two 256-bit keys) and up to VD_KEY_SLOTS key slots in
 * its metadata, each the data key wrapped (AES-256-GCM) by a key derived
 * from one key file (PBKDF2-HMAC-SHA256).  A device flagged
 * VD_DEVF_ENCRYPT stores its data area encrypted with the data key; its
 * header and metadata area stay plaintext.  Format: docs/format.md,
 * threat model: docs/encryption.md.
 *
 * Threads: the md/open/create/key functions run on the admin thread with
 * the pool's admin_lock held (or during open/create, single-threaded);
 * vd_crypt_read/vd_crypt_write_* are thread-safe (any I/O thread) once
 * vd_crypt_pool_open has returned 0 (the argument is in crypt.c). */
#ifndef VD_CRYPT_H
#define VD_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "pool_int.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VD_KEY_SLOTS 8
/* XTS data unit (sector): 512 bytes, or 4096 (encryption.sector_size);
 * tweak = device offset / sector size */
#define VD_CRYPT_SECTOR     512u
#define VD_CRYPT_SECTOR_MAX 4096u
#define VD_KEY_FILE_MIN     16u /* bytes of a key file */
#define VD_KEY_FILE_MAX     4096u
#define VD_PBKDF2_ITER      200000u /* new slots */
#define VD_PBKDF2_ITER_MIN  1000u   /* what a slot may hold (hostile md) */
#define VD_PBKDF2_ITER_MAX  4000000u

enum { VD_CIPHER_AES256_XTS_512 = 1, VD_CIPHER_AES256_XTS_4096 = 2 };
enum { VD_KDF_PBKDF2_SHA256 = 1 };
enum { VD_WRAP_AES256_GCM = 1 };

/* VD_OP_KEY_SLOT (11): slot `slot` holds the data key wrapped by the key
 * file whose PBKDF2-HMAC-SHA256(salt, iterations) is the AES-256-GCM key;
 * the GCM additional data is the pool uuid followed by bytes 8..71 of
 * this record (slot .. iv), so a slot copied from another pool or with a
 * changed iteration count does not unwrap. */
struct vd_op_key_slot {
    struct vd_op_hdr h;  /*   0 */
    uint32_t slot;       /*   8: 0 .. VD_KEY_SLOTS - 1 */
    uint32_t cipher;     /*  12: VD_CIPHER_* of the data */
    uint32_t kdf;        /*  16: VD_KDF_* */
    uint32_t iterations; /*  20 */
    uint8_t salt[32];    /*  24: random per slot */
    uint32_t wrap;       /*  56: VD_WRAP_* */
    uint8_t iv[12];      /*  60: random per wrap */
    uint8_t wrapped[64]; /*  72: the data key, encrypted */
    uint8_t tag[16];     /* 136: GCM tag */
};
_Static_assert(sizeof(struct vd_op_key_slot) == 152, "op key slot");

/* VD_OP_KEY_REMOVE (12): slot `slot` is empty from now on. */
struct vd_op_key_remove {
    struct vd_op_hdr h; /*  0 */
    uint32_t slot;      /*  8 */
    uint32_t pad0;      /* 12 */
};
_Static_assert(sizeof(struct vd_op_key_remove) == 16, "op key remove");

/* VD_OP_CRYPT_JOB (30): `vol encrypt` of volume vol is pending (vol
 * VD_NO_DEV: no job); rate in bytes/s for each move (0: unlimited); bit i
 * of src: device i held extents of the volume without encryption when
 * the job started (their freed extents are zeroed; after a restart every
 * free extent of those devices is, before the job ends). */
struct vd_op_crypt_job {
    struct vd_op_hdr h;           /*  0 */
    uint32_t vol;                 /*  8 */
    uint32_t pad0;                /* 12 */
    uint64_t rate;                /* 16 */
    uint8_t src[VD_MAX_DEVS / 8]; /* 24 */
};
_Static_assert(sizeof(struct vd_op_crypt_job) == 56, "op crypt job");

/* The background thread's tick (bg.c): start the job's next move, zero
 * the plaintext extents freed.  No lock held. */
void vd_crypt_tick(vd_pool *p);

/* Metadata (md.c): apply op n (type 11, 12 or 30) to p's state; 0 or -EINVAL
 * (logged).  Serialise the slots into a checkpoint.  Admin lock held. */
int vd_crypt_md_apply(vd_pool *p, const struct vd_op_hdr *h, uint32_t n);
int vd_crypt_md_serialize(const vd_pool *p, struct vd_opbuf *b);

/* Create (pool.c): when conf has a key file, add the first key slot (a
 * new random data key wrapped by it) to ops.  The VD_DEVF_ENCRYPT flag
 * of a device: vd_crypt_dev_flags.  0 or a negative errno (logged). */
int vd_crypt_create_ops(const struct vd_conf_pool *conf,
                        const uint8_t pool_uuid[16], struct vd_opbuf *ops);
uint32_t vd_crypt_dev_flags(const struct vd_conf_dev *c);

/* pool apply (pool.c), admin lock held: a new device with encrypt: true
 * needs an unlocked encrypted pool (0, or -EINVAL logged with file:line);
 * attach the data key to a device that joined with VD_DEVF_ENCRYPT
 * before it gets an extent. */
int vd_crypt_dev_check(const vd_pool *p, const struct vd_conf_dev *c,
                       const char *file);
void vd_crypt_dev_attach(vd_pool *p, struct vd_dev *d);

/* Open (pool.c), after the state is loaded and before any data I/O:
 * check the definition against the state (encrypt flags, key file),
 * unwrap the data key and attach it to the encrypted devices.  0, or a
 * negative errno with one message and nothing changed. */
int vd_crypt_pool_open(vd_pool *p, const struct vd_conf_pool *conf);
/* Wipe and free p->crypt (pool_free; no I/O in flight). */
void vd_crypt_free(vd_pool *p);

/* I/O (dev.c), on whole sectors at a device offset `off` in the data
 * area.  Decrypt buf in place; an all-zero sector stays zero (never
 * written, or zeroed by the device: see crypt.c).  0 or -ENOMEM. */
int vd_crypt_read(struct vd_crypt *c, void *buf, size_t len, uint64_t off);
/* Writing: take a worker (its bounce buffer holds the ciphertext until
 * the write returned), encrypt, give it back.  vd_crypt_write_begin
 * returns the ciphertext of src (len bytes) or NULL (-ENOMEM). */
struct vd_crypt_worker;
struct vd_crypt_worker *vd_crypt_worker_get(struct vd_crypt *c);
void vd_crypt_worker_put(struct vd_crypt *c, struct vd_crypt_worker *w);
const void *vd_crypt_encrypt(struct vd_crypt_worker *w, const void *src,
                             size_t len, uint64_t off);
/* Largest piece vd_crypt_encrypt takes (bounce buffer size). */
#define VD_CRYPT_BOUNCE_MAX (4u << 20)

/* The pool's XTS sector size (512 or 4096); I/O to an encrypted device is
 * aligned to it (dev.c bounces what is not).  Constant while open. */
uint32_t vd_crypt_sector(const struct vd_crypt *c);

/* Read a key file, checked root-only (regular file, owner root or us,
 * no group/other bits), VD_KEY_FILE_MIN..MAX bytes, into key (*len set).
 * what names the file's role in msg ("encryption.key_file").  0 or a
 * negative errno with msg saying what to do. */
int vd_crypt_key_file_read(const char *path, const char *what, uint8_t *key,
                           size_t *len, char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif
#endif
