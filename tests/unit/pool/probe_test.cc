// Unit tests for pool/probe.c: the foreign-data probe and the header wipe of
// `vdlvm pool remove`, on files in a temporary directory.
#include <gtest/gtest.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "pool/vdpool.h"
#include "pool/vdpool.h"

namespace {

class Probe : public ::testing::Test {
  protected:
    std::string dir;
    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-probe-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", (dir + "/run").c_str(), 1);
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
    std::string File(const char *name, off_t size)
    {
        std::string p = dir + "/" + name;
        int fd = open(p.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(ftruncate(fd, size), 0);
        close(fd);
        return p;
    }
    static void Poke(const std::string &p, off_t off, const void *buf,
                     size_t len)
    {
        int fd = open(p.c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(pwrite(fd, buf, len, off), (ssize_t)len);
        close(fd);
    }
    static int Run(const std::string &path, std::string *what)
    {
        struct vd_conf_dev c = {};
        char buf[512];
        c.name = (char *)"d0";
        c.path = (char *)path.c_str();
        int r = vd_dev_probe_foreign(&c, buf, sizeof(buf));
        *what = buf;
        return r;
    }
};

TEST_F(Probe, ZeroFileMissingPathDirectory_Unused)
{
    std::string what;
    EXPECT_EQ(Run(File("zero.img", 8 << 20), &what), 0) << what;
    EXPECT_EQ(Run(dir + "/missing.img", &what), 0) << what;
    EXPECT_EQ(Run(dir, &what), 0) << what;  // pool create says "directory"
    EXPECT_EQ(Run(File("tiny.img", 100), &what), 0) << what;
}

TEST_F(Probe, NonZeroByteInFirstMiB_ForeignAtItsOffset)
{
    std::string p = File("x.img", 8 << 20), what;
    Poke(p, (1 << 20) - 1, "x", 1);
    EXPECT_EQ(Run(p, &what), 1);
    EXPECT_NE(what.find("non-zero data (at byte 1048575 of the first 1MiB"),
              std::string::npos) << what;
    // Beyond the first MiB: not looked at.
    std::string q = File("y.img", 8 << 20);
    Poke(q, 1 << 20, "y", 1);
    EXPECT_EQ(Run(q, &what), 0) << what;
}

TEST_F(Probe, Ext4_NamedWithLabel)
{
    if (system("command -v mkfs.ext4 >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "no mkfs.ext4";
    std::string p = File("fs.img", 16 << 20), what;
    std::string cmd = "mkfs.ext4 -q -F -L lbl '" + p + "' >/dev/null 2>&1";
    ASSERT_EQ(system(cmd.c_str()), 0);
    EXPECT_EQ(Run(p, &what), 1);
    EXPECT_EQ(what.rfind("an ext4 file system (UUID ", 0), 0u) << what;
    EXPECT_NE(what.find("label lbl)"), std::string::npos) << what;
}

TEST_F(Probe, PartitionTable_Named)
{
    // An MBR with one partition entry: signature 55 AA at 510.
    std::string p = File("mbr.img", 8 << 20), what;
    unsigned char mbr[512] = {};
    mbr[446 + 4] = 0x83;                       // Linux partition
    mbr[446 + 8] = 1;                          // start LBA 1
    mbr[446 + 12] = 0x10;                      // 16 sectors
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    Poke(p, 0, mbr, sizeof(mbr));
    EXPECT_EQ(Run(p, &what), 1);
    EXPECT_NE(what.find("partition table (dos)"), std::string::npos) << what;
}

TEST_F(Probe, VdlvmDevice_LeftToPoolCreateThenWipedUnused)
{
    std::string p = dir + "/v.img", what;
    struct vd_conf_dev dev = {};
    dev.name = (char *)"d0";
    dev.path = (char *)p.c_str();
    dev.size = 64ull << 20;
    dev.node = (char *)"n";
    struct vd_conf_pool conf = {};
    conf.file = (char *)"t.yaml";
    conf.name = (char *)"p";
    conf.extent_size = 4ull << 20;
    conf.ndevs = 1;
    conf.devs = &dev;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    EXPECT_EQ(Run(p, &what), 0) << what;       // vdlvm's own: not foreign

    char msg[256];
    EXPECT_EQ(vd_dev_wipe_header(&dev, msg, sizeof(msg)), 0) << msg;
    EXPECT_EQ(Run(p, &what), 0) << what;       // and free after the wipe
    vd_pool *pool = nullptr;
    EXPECT_LT(vd_pool_open(&conf, &pool), 0);  // no pool any more
    EXPECT_EQ(vd_dev_wipe_header(&dev, msg, sizeof(msg)), -ENODATA);
    EXPECT_STREQ(msg, "no vdlvm header");
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);    // without force
}

}  // namespace
