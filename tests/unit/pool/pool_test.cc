// Unit tests for pool/pool.c: create, open (copy vote, majority, partial), the lock, device retry.
// Shared fixtures: tests/unit/pool_fixture.h.
#include <dlfcn.h>
#include <sys/stat.h>

#include "tests/unit/pool_fixture.h"

using namespace vdtest_pool;

namespace {

TEST_F(PoolTest, Create_ThenOpen_EmptyPool)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    struct vd_pool_info pi;
    vd_pool_get_info(p, &pi);
    EXPECT_EQ(pi.ndevs, 3u);
    EXPECT_EQ(pi.nvols, 0u);
    // 64 MiB devices: 5 MiB metadata, 14 extents of 4 MiB each.
    EXPECT_EQ(pi.total_bytes, 3 * 14 * (4ull << 20));
    struct vd_dev_info di;
    int md = 0;
    for (uint32_t i = 0; i < 3; i++) {
        ASSERT_EQ(vd_pool_dev_get_info(p, i, &di), 0);
        EXPECT_EQ(di.state, VD_DEV_OK);
        EXPECT_EQ(di.name, names[i]);
        md += di.has_md;
    }
    EXPECT_EQ(md, 3);
    vd_pool_close(p);
}

TEST_F(PoolTest, Metadata_CorruptCopy_FallsBackAndRepairs)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_pool_close(p);
    // Flip a byte in the checkpoint of d0 and in the delta of d1.
    CorruptMd(0, 100);
    CorruptMd(1, 4096 + 80);
    log_lines.clear();
    p = Open();
    ASSERT_NE(p, nullptr);
    struct vd_vol_info vi;
    EXPECT_EQ(vd_vol_get_info(p, "vol0", &vi), 0);
    bool warned = false;
    for (auto &l : log_lines)
        warned |= l.find("repaired") != std::string::npos;
    EXPECT_TRUE(warned);
    vd_pool_close(p);
    // The repaired copies alone now carry the pool: break d2's copy.
    CorruptMd(2, 100);
    CorruptMd(2, 4096 + 80);
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(vd_vol_get_info(p, "vol0", &vi), 0);
    vd_pool_close(p);
}

TEST_F(PoolTest, Metadata_StaleCopy_NewestWins)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    // Save d2's metadata area, commit, then put the old one back.
    std::vector<char> saved(VD_MD_SIZE);
    int fd = open(paths[2].c_str(), O_RDWR);
    ASSERT_EQ(pread(fd, saved.data(), saved.size(), VD_MD_OFFSET), (ssize_t)saved.size());
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_pool_close(p);
    ASSERT_EQ(pwrite(fd, saved.data(), saved.size(), VD_MD_OFFSET), (ssize_t)saved.size());
    close(fd);
    // Only d2 left readable: it is stale; with all three the newest wins.
    p = Open();
    struct vd_vol_info vi;
    EXPECT_EQ(vd_vol_get_info(p, "vol0", &vi), 0);
    vd_pool_close(p);
}

TEST_F(PoolTest, Open_AllCopiesCorrupt_Fails)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    for (int i = 0; i < 3; i++)
        CorruptMd(i, 100);
    vd_pool *p = nullptr;
    EXPECT_EQ(vd_pool_open(&conf, &p), -EIO);
    EXPECT_EQ(p, nullptr);
}

// A header written by another (maybe hostile) host with an extent size
// that is not a power of two of at least 1 MiB: the device is not used;
// with every header so, the pool does not open.  (The metadata's pool
// record, which must agree with the header, refused it before too, later
// and as "another pool"; this pins the outcome, the header check gives
// the reason.)
TEST_F(PoolTest, Open_HeaderExtentSizeNotPowerOfTwo_DeviceRefused)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    const uint64_t bad[] = { 0, 3ull << 20, 512 };
    for (int i = 0; i < 3; i++) {
        int fd = open(paths[i].c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        struct vd_dev_hdr h;
        ASSERT_EQ(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
        h.extent_size = bad[i];
        h.crc = 0;
        h.crc = vd_crc32c(0, &h, sizeof(h));
        ASSERT_EQ(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
        close(fd);
    }
    vd_pool *p = nullptr;
    EXPECT_LT(vd_pool_open(&conf, &p), 0);
    EXPECT_EQ(p, nullptr);
}

TEST_F(PoolTest, Open_MissingDevice_OpensDegraded)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 80ull << 20, nullptr), 0);
    vd_pool_close(p);
    ASSERT_EQ(unlink(paths[1].c_str()), 0);
    p = Open();
    ASSERT_NE(p, nullptr);
    struct vd_dev_info di;
    vd_pool_dev_get_info(p, 1, &di);
    EXPECT_EQ(di.state, VD_DEV_MISSING);
    EXPECT_NE(std::string(di.state_msg).find("d1.img"), std::string::npos);
    vd_vol *v = vd_vol_open(p, "vol0");
    ASSERT_NE(v, nullptr);
    char buf[4096];
    EXPECT_EQ(vd_vol_pread(v, buf, sizeof(buf), 0), 0);                 // d0
    EXPECT_EQ(vd_vol_pread(v, buf, sizeof(buf), 40ull << 20), -EIO);    // d1
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, Create_DeviceOfAnotherPool_RefusedUnlessForce)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    conf.name = (char *)"pool1";
    struct stat st1, st2;
    ASSERT_EQ(stat(paths[0].c_str(), &st1), 0);
    EXPECT_EQ(vd_pool_create(&conf, 0), -EEXIST);
    ASSERT_EQ(stat(paths[0].c_str(), &st2), 0);
    EXPECT_EQ(st1.st_mtime, st2.st_mtime);
    conf.name = (char *)"pool0";
    vd_pool *p = Open(); // still intact
    ASSERT_NE(p, nullptr);
    vd_pool_close(p);
    conf.name = (char *)"pool1";
    EXPECT_EQ(vd_pool_create(&conf, 1), 0);
}

TEST_F(PoolTest, Create_MissingFileWithoutSize_CreatesNothing)
{
    devs[2].size = 0;
    EXPECT_EQ(vd_pool_create(&conf, 0), -ENOENT);
    for (auto &path : paths)
        EXPECT_NE(access(path.c_str(), F_OK), 0) << path;
}

TEST_F(PoolTest, Open_SecondOpener_GetsEbusy)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    vd_pool *q = nullptr;
    log_lines.clear();
    EXPECT_EQ(vd_pool_open(&conf, &q), -EBUSY);
    ASSERT_FALSE(log_lines.empty());
    EXPECT_NE(log_lines.back().find("pid"), std::string::npos);
    vd_pool_close(p);
}

TEST_F(PoolTest, Open_MissingDevice_RejoinsWhenBack)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 80ull << 20, nullptr), 0);
    vd_pool_close(p);
    std::string away = paths[1] + ".away";
    ASSERT_EQ(rename(paths[1].c_str(), away.c_str()), 0);
    p = Open();
    ASSERT_NE(p, nullptr);
    vd_vol *v = vd_vol_open(p, "vol0");
    char buf[4096];
    EXPECT_EQ(vd_vol_pread(v, buf, sizeof(buf), 40ull << 20), -EIO); // on d1
    ASSERT_EQ(rename(away.c_str(), paths[1].c_str()), 0);
    struct vd_dev_info di = {};
    for (int i = 0; i < 100; i++) { // the background thread retries it
        vd_pool_dev_get_info(p, 1, &di);
        if (di.state == VD_DEV_OK)
            break;
        usleep(100000);
    }
    EXPECT_EQ(di.state, VD_DEV_OK);
    EXPECT_EQ(vd_vol_pread(v, buf, sizeof(buf), 40ull << 20), 0);
    EXPECT_EQ(vd_vol_pwrite(v, buf, sizeof(buf), 40ull << 20, VD_IO_FUA), 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

std::vector<char> ReadFile(const std::string &path)
{
    std::vector<char> b;
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0)
        return b;
    struct stat st;
    fstat(fd, &st);
    b.resize(st.st_size);
    if (pread(fd, b.data(), b.size(), 0) != (ssize_t)b.size())
        b.clear();
    close(fd);
    return b;
}

void WriteFile(const std::string &path, const std::vector<char> &b)
{
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, b.data(), b.size(), 0), (ssize_t)b.size());
    close(fd);
}

// Defect 11: the pool opened from any single metadata copy.  With two of
// three copies gone it is refused, naming the missing devices and paths
// and --partial; VD_OPEN_PARTIAL opens from what is there.
TEST_F(PoolTest, Open_MinorityOfCopies_RefusedUnlessPartial)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "v", 4ull << 20, nullptr), 0); // on d0
    vd_pool_close(p);
    std::string a1 = paths[1] + ".away", a2 = paths[2] + ".away";
    ASSERT_EQ(rename(paths[1].c_str(), a1.c_str()), 0);
    ASSERT_EQ(rename(paths[2].c_str(), a2.c_str()), 0);
    log_lines.clear();
    p = nullptr;
    EXPECT_EQ(vd_pool_open(&conf, &p), -ENODEV);
    EXPECT_EQ(p, nullptr);
    ASSERT_FALSE(log_lines.empty());
    std::string m = log_lines.back();
    EXPECT_NE(m.find("only 1 of 3 metadata copies"), std::string::npos) << m;
    EXPECT_NE(m.find("device 'd1' (" + paths[1] + ")"), std::string::npos) << m;
    EXPECT_NE(m.find("device 'd2' (" + paths[2] + ")"), std::string::npos) << m;
    EXPECT_NE(m.find("--partial"), std::string::npos) << m;
    EXPECT_EQ(m.find("device 'd0'"), std::string::npos) << m;
    ASSERT_EQ(vd_pool_open_flags(&conf, VD_OPEN_PARTIAL, &p), 0);
    ASSERT_NE(p, nullptr);
    struct vd_vol_info vi;
    EXPECT_EQ(vd_vol_get_info(p, "v", &vi), 0);
    vd_pool_close(p);
    // two of three are a majority
    ASSERT_EQ(rename(a1.c_str(), paths[1].c_str()), 0);
    p = nullptr;
    EXPECT_EQ(vd_pool_open(&conf, &p), 0);
    vd_pool_close(p);
}

// Defect 11: a copy that returns with a higher sequence number than the
// pool's (another host committed while it was away from us) is refused
// loudly and left untouched; the pool keeps working without it.
TEST_F(PoolTest, RetryDevice_NewerCopy_RefusedAsSplitBrainNotOverwritten)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    std::vector<std::vector<char>> s0;
    for (auto &path : paths)
        s0.push_back(ReadFile(path));
    // "another host" commits twice
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "h2a", 4ull << 20, nullptr), 0);
    ASSERT_EQ(vd_vol_create(p, "h2b", 4ull << 20, nullptr), 0);
    vd_pool_close(p);
    std::vector<char> future = ReadFile(paths[1]);
    // we see the old images of d0 and d2, and d1 is away
    WriteFile(paths[0], s0[0]);
    WriteFile(paths[2], s0[2]);
    ASSERT_EQ(unlink(paths[1].c_str()), 0);
    p = Open();
    ASSERT_NE(p, nullptr);
    uint64_t seq = p->seq;
    WriteFile(paths[1], future); // d1 comes back
    log_lines.clear();
    struct vd_dev_info di = {};
    ASSERT_TRUE(WaitFor([&] {
        p->devs[1].retry_next_ms = 0;
        vd_pool_retry_devices(p);
        vd_pool_dev_get_info(p, 1, &di);
        return std::string(di.state_msg).find("split brain") != std::string::npos ||
               di.state == VD_DEV_OK;
    }));
    EXPECT_NE(di.state, VD_DEV_OK);
    EXPECT_NE(std::string(di.state_msg).find("split brain"), std::string::npos)
        << di.state_msg;
    bool loud = false;
    for (auto &l : log_lines)
        loud |= l.find("split brain") != std::string::npos;
    EXPECT_TRUE(loud);
    // not retried again, and never overwritten: a commit leaves it as it was
    EXPECT_EQ(p->devs[1].retry_next_ms, INT64_MAX);
    ASSERT_EQ(vd_vol_create(p, "mine", 4ull << 20, nullptr), 0);
    EXPECT_EQ(p->seq, seq + 1);
    vd_pool_close(p);
    EXPECT_TRUE(ReadFile(paths[1]) == future);
}

// Defect 11: a stale copy that returns is repaired (its data extents are
// usable again), into the half that does not hold its last chain.
TEST_F(PoolTest, RetryDevice_StaleCopy_RepairedAndRejoins)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    std::string away = paths[1] + ".away";
    ASSERT_EQ(rename(paths[1].c_str(), away.c_str()), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "v", 4ull << 20, nullptr), 0);
    ASSERT_EQ(rename(away.c_str(), paths[1].c_str()), 0);
    struct vd_dev_info di = {};
    ASSERT_TRUE(WaitFor([&] {
        p->devs[1].retry_next_ms = 0;
        vd_pool_retry_devices(p);
        vd_pool_dev_get_info(p, 1, &di);
        return di.state == VD_DEV_OK;
    }));
    vd_pool_close(p);
    // d1 alone with d0 (d2 away) is a majority again, at the newest seq
    ASSERT_EQ(unlink(paths[2].c_str()), 0);
    p = Open();
    ASSERT_NE(p, nullptr);
    struct vd_vol_info vi;
    EXPECT_EQ(vd_vol_get_info(p, "v", &vi), 0);
    vd_pool_close(p);
}

// Defect 11: two hosts that each committed the same sequence number leave
// copies with equal numbers and different states; the state most copies
// hold wins and the other copy is kept out, not overwritten (before, the
// first device's copy won and the others were taken as current).
TEST_F(PoolTest, Open_EqualSeqDifferentStates_MajorityWinsMinorityKeptOut)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    std::vector<std::vector<char>> s0;
    for (auto &path : paths)
        s0.push_back(ReadFile(path));
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "x", 4ull << 20, nullptr), 0);
    vd_pool_close(p);
    std::vector<char> x0 = ReadFile(paths[0]);
    for (size_t i = 0; i < paths.size(); i++)
        WriteFile(paths[i], s0[i]);
    p = Open();
    ASSERT_EQ(vd_vol_create(p, "y", 8ull << 20, nullptr), 0);
    vd_pool_close(p);
    WriteFile(paths[0], x0);
    log_lines.clear();
    p = Open();
    ASSERT_NE(p, nullptr);
    struct vd_vol_info vi;
    EXPECT_EQ(vd_vol_get_info(p, "y", &vi), 0);
    EXPECT_EQ(vd_vol_get_info(p, "x", &vi), -ENOENT);
    struct vd_dev_info di;
    ASSERT_EQ(vd_pool_dev_get_info(p, 0, &di), 0);
    EXPECT_EQ(di.state, VD_DEV_FAILED);
    EXPECT_NE(std::string(di.state_msg).find("split brain"), std::string::npos)
        << di.state_msg;
    vd_pool_close(p);
    EXPECT_TRUE(ReadFile(paths[0]) == x0);
}

} // namespace

// Read faults for the tests below: pread of a whole metadata area
// (VD_MD_SIZE at VD_MD_OFFSET) of the file with inode md_fail_ino fails
// with EIO md_fail_left times.  Defined here, pread replaces libc's for
// the statically linked library; other reads go to libc's.
static ino_t md_fail_ino;
static int md_fail_left;
extern "C" ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, void *, size_t, off_t) =
        (ssize_t(*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread");
    struct stat st;
    if (md_fail_ino && off == (off_t)VD_MD_OFFSET && n == VD_MD_SIZE &&
        fstat(fd, &st) == 0 && st.st_ino == md_fail_ino &&
        __atomic_load_n(&md_fail_left, __ATOMIC_RELAXED) > 0) {
        __atomic_fetch_sub(&md_fail_left, 1, __ATOMIC_RELAXED);
        errno = EIO;
        return -1;
    }
    return real(fd, buf, n, off);
}

namespace {

ino_t Ino(const std::string &path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}


// Simulator seed 4265: a read error on a copy's metadata area at open
// zeroed the buffer, took the copy as "missing or corrupt" and rewrote it
// from the older copies: the newest commit, on that copy only, was lost.
// An unreadable copy is missing: retried once, not counted, not written.
TEST_F(PoolTest, Open_MetadataReadError_CopyMissingNotOverwritten)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "a", 4ull << 20, nullptr), 0);
    vd_pool_close(p);
    std::vector<char> d1 = ReadFile(paths[1]), d2 = ReadFile(paths[2]);
    p = Open();
    ASSERT_EQ(vd_vol_create(p, "b", 4ull << 20, nullptr), 0);
    vd_pool_close(p);
    WriteFile(paths[1], d1); // "b" is on d0 only
    WriteFile(paths[2], d2);
    std::vector<char> d0 = ReadFile(paths[0]);
    struct vd_vol_info vi;

    // one read error: the retry reads it, d0's newer state wins
    md_fail_ino = Ino(paths[0]);
    md_fail_left = 1;
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(md_fail_left, 0);
    EXPECT_EQ(vd_vol_get_info(p, "b", &vi), 0);
    vd_pool_close(p);
    WriteFile(paths[1], d1);
    WriteFile(paths[2], d2);
    WriteFile(paths[0], d0);

    // unreadable (both reads fail): missing, kept out, not overwritten
    md_fail_left = 2;
    log_lines.clear();
    p = Open(); // d1 and d2 are a majority
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(md_fail_left, 0);
    struct vd_dev_info di;
    ASSERT_EQ(vd_pool_dev_get_info(p, 0, &di), 0);
    EXPECT_NE(di.state, VD_DEV_OK);
    EXPECT_NE(std::string(di.state_msg).find("metadata area cannot be read"),
              std::string::npos) << di.state_msg;
    for (auto &l : log_lines)
        EXPECT_EQ(l.find("repaired"), std::string::npos) << l;
    vd_pool_close(p);
    md_fail_ino = 0;
    EXPECT_TRUE(ReadFile(paths[0]) == d0);
    p = Open(); // readable again: its newer commit is there
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(vd_vol_get_info(p, "b", &vi), 0);
    vd_pool_close(p);
}

} // namespace

namespace {

// pool apply with a device left out of the definition (issue 12): refused
// while it holds extents, naming them; once evacuated it leaves, its
// metadata copy goes to another device and its header is cleared; the
// pool opens without it.
TEST_F(PoolTest, Apply_EmptyDeviceLeftOut_Leaves_MetadataCopyMoves)
{
    __atomic_store_n(&g_move_test_hold, true, __ATOMIC_RELEASE);
    Define(4, 64ull << 20);
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    const uint64_t es = 4ull << 20;
    ASSERT_EQ(vd_vol_create(p, "vol0", 12 * es, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> w(12 * es);
    for (size_t i = 0; i < w.size(); i++)
        w[i] = (char)(i * 13 + (i >> 16));
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, 0), 0);
    uint32_t md0 = 0;
    for (uint32_t i = 0; i < 4; i++)
        md0 += !!(p->devs[i].flags & VD_DEVF_MD);
    ASSERT_TRUE(p->devs[0].flags & VD_DEVF_MD);

    // the definition without d0
    struct vd_conf_pool c2 = conf;
    std::vector<struct vd_conf_dev> d2(devs.begin() + 1, devs.end());
    c2.devs = d2.data();
    c2.ndevs = d2.size();
    char plan[4096];
    uint64_t seq = p->seq;
    log_lines.clear();
    EXPECT_EQ(vd_pool_apply(p, &c2, 0, plan, sizeof(plan)), -EINVAL);
    ASSERT_FALSE(log_lines.empty());
    EXPECT_NE(log_lines.back().find("volume 'vol0' ("), std::string::npos) << log_lines.back();
    EXPECT_EQ(p->seq, seq);

    ASSERT_EQ(vd_dev_evacuate(p, "d0", nullptr, 0, 0), 0);
    ASSERT_EQ(vd_move_wait(p, 60000), 0);
    ASSERT_EQ(vd_pool_dev_extents(p, "d0"), 0u);
    ASSERT_EQ(vd_pool_apply(p, &c2, 1, plan, sizeof(plan)), 0);
    EXPECT_NE(std::string(plan).find("remove device 'd0'"), std::string::npos) << plan;
    EXPECT_TRUE(p->devs[0].used != nullptr); // dry run
    ASSERT_EQ(vd_pool_apply(p, &c2, 0, plan, sizeof(plan)), 0);
    EXPECT_EQ(p->devs[0].used, nullptr);
    struct vd_dev_info di;
    EXPECT_EQ(vd_pool_dev_get_info(p, 0, &di), -ENOENT);
    uint32_t md1 = 0;
    for (uint32_t i = 0; i < p->ndevs; i++)
        md1 += p->devs[i].used && (p->devs[i].flags & VD_DEVF_MD);
    EXPECT_EQ(md1, md0);
    // nothing of vdlvm stays on d0
    {
        int fd = open(paths[0].c_str(), O_RDONLY);
        ASSERT_GE(fd, 0);
        char magic[8];
        ASSERT_EQ(pread(fd, magic, 8, 0), 8);
        close(fd);
        EXPECT_NE(memcmp(magic, VD_DEV_MAGIC, 8), 0);
    }
    ASSERT_EQ(vd_pool_apply(p, &c2, 1, plan, sizeof(plan)), 0);
    EXPECT_NE(std::string(plan).find("nothing to change"), std::string::npos) << plan;
    std::vector<char> got(w.size());
    ASSERT_EQ(vd_vol_pread(v, got.data(), got.size(), 0), 0);
    EXPECT_TRUE(got == w);
    vd_vol_close(v);
    vd_pool_close(p);

    // the pool opens from the definition without d0; a new volume works
    conf = c2;
    std::vector<struct vd_conf_dev> keep = d2;
    conf.devs = keep.data();
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->devs[0].used, nullptr);
    v = vd_vol_open(p, "vol0");
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(vd_vol_pread(v, got.data(), got.size(), 0), 0);
    EXPECT_TRUE(got == w);
    vd_vol_close(v);
    EXPECT_EQ(vd_vol_create(p, "vol1", 4 * es, nullptr), 0);
    vd_pool_close(p);
    __atomic_store_n(&g_move_test_hold, false, __ATOMIC_RELEASE);
}

} // namespace
