// Unit tests for `chunk_size:` in the pool definition (config/config.c):
// default 64 KiB, a power of two from 4 KiB to the extent size, the one
// size rule, FILE:LINE:COL errors and nothing returned on error.
#include <gtest/gtest.h>

#include <errno.h>
#include <string.h>

#include <string>

#include "config/vdconfig.h"

namespace {

const char kDevs[] = "devices:\n  - name: d0\n    path: /tmp/vdlvm-chunk-d0.img\n"
                     "    size: 64MiB\n";

int Parse(const std::string &yaml, vd_conf_pool **out, std::string *err)
{
    char buf[1024] = "";
    int rc = vd_conf_parse("t.yaml", yaml.data(), yaml.size(), out, buf,
                           sizeof(buf));
    *err = buf;
    return rc;
}

// rc -EINVAL, *out untouched, message starts with prefix and contains what.
::testing::AssertionResult Fails(const std::string &yaml,
                                 const std::string &prefix,
                                 const std::string &what)
{
    vd_conf_pool sentinel{};
    vd_conf_pool *conf = &sentinel;
    std::string e;
    int rc = Parse(yaml, &conf, &e);
    if (rc != -EINVAL)
        return ::testing::AssertionFailure() << "rc " << rc << ", err " << e;
    if (conf != &sentinel)
        return ::testing::AssertionFailure() << "*out was changed on error";
    if (e.rfind(prefix, 0) != 0)
        return ::testing::AssertionFailure()
               << "'" << e << "' does not start with '" << prefix << "'";
    if (e.find(what) == std::string::npos)
        return ::testing::AssertionFailure()
               << "'" << e << "' does not contain '" << what << "'";
    return ::testing::AssertionSuccess();
}

uint64_t ChunkOf(const std::string &yaml)
{
    vd_conf_pool *conf = nullptr;
    std::string e;
    if (Parse(yaml, &conf, &e) != 0) {
        ADD_FAILURE() << "parse failed: " << e;
        return 0;
    }
    uint64_t c = conf->chunk_size;
    vd_conf_free(conf);
    return c;
}

// read_policy: (the other pool-level key besides chunk_size): local by
// default, spread when given, anything else refused at its value.
TEST(ReadPolicy, AbsentLocal_GivenParsed_OtherRefused)
{
    vd_conf_pool *conf = nullptr;
    std::string e;
    ASSERT_EQ(Parse(std::string("pool: p\n") + kDevs, &conf, &e), 0) << e;
    EXPECT_EQ(conf->read_policy, VD_READ_LOCAL);
    vd_conf_free(conf);
    ASSERT_EQ(Parse(std::string("pool: p\nread_policy: spread\n") + kDevs, &conf, &e), 0)
        << e;
    EXPECT_EQ(conf->read_policy, VD_READ_SPREAD);
    vd_conf_free(conf);
    ASSERT_EQ(Parse(std::string("pool: p\nread_policy: local\n") + kDevs, &conf, &e), 0)
        << e;
    EXPECT_EQ(conf->read_policy, VD_READ_LOCAL);
    vd_conf_free(conf);
    EXPECT_TRUE(Fails(std::string("pool: p\nread_policy: nearest\n") + kDevs,
                      "t.yaml:2:14: ", "read_policy 'nearest' is not local or spread"));
    EXPECT_TRUE(Fails(std::string("pool: p\nread_policy: [local]\n") + kDevs,
                      "t.yaml:2:14: ", "read_policy must be a scalar"));
}

TEST(ChunkSize, Absent_Default64KiB)
{
    EXPECT_EQ(64u << 10, ChunkOf(std::string("pool: p\n") + kDevs));
    EXPECT_EQ(64u << 10, VD_CHUNK_SIZE_DEFAULT);
}

TEST(ChunkSize, Given_Parsed)
{
    EXPECT_EQ(4u << 10, ChunkOf(std::string("pool: p\nchunk_size: 4KiB\n") + kDevs));
    EXPECT_EQ(1u << 20, ChunkOf(std::string("pool: p\nchunk_size: 1M\n") + kDevs));
    EXPECT_EQ(256u << 10,
              ChunkOf(std::string("pool: p\nchunk_size: 0.25MiB\n") + kDevs));
    EXPECT_EQ(8192u, ChunkOf(std::string("pool: p\nchunk_size: 8192\n") + kDevs));
}

TEST(ChunkSize, EqualToExtent_Accepted)
{
    EXPECT_EQ(4u << 20, ChunkOf(std::string("pool: p\nchunk_size: 4MiB\n") + kDevs));
    // the key order does not matter: extent_size after chunk_size
    EXPECT_EQ(8u << 20, ChunkOf(std::string("pool: p\nchunk_size: 8MiB\n"
                                            "extent_size: 8MiB\n") +
                                kDevs));
}

TEST(ChunkSize, NotPowerOfTwo_RejectedAtValue)
{
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: 96KiB\n") + kDevs,
                      "t.yaml:2:13: ",
                      "chunk_size 96KiB is not a power of two; use e.g. 64KiB"));
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: 0\n") + kDevs,
                      "t.yaml:2:13: ", "chunk_size 0 is not a power of two"));
}

TEST(ChunkSize, BelowMinimum_Rejected)
{
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: 2KiB\n") + kDevs,
                      "t.yaml:2:13: ",
                      "chunk_size 2KiB is less than 4KiB; use a power of two "
                      "from 4KiB to the extent size"));
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: 512\n") + kDevs,
                      "t.yaml:2:13: ", "less than 4KiB"));
}

TEST(ChunkSize, AboveExtent_RejectedNamingExtent)
{
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: 8MiB\n") + kDevs,
                      "t.yaml:2:13: ",
                      "chunk_size 8MiB is larger than the extent size 4MiB; "
                      "use a power of two from 4KiB to 4MiB"));
    EXPECT_TRUE(Fails(std::string("pool: p\nextent_size: 1MiB\nchunk_size: 2MiB\n") +
                          kDevs,
                      "t.yaml:3:13: ", "larger than the extent size 1MiB"));
}

TEST(ChunkSize, NotASize_SizeRule)
{
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: 64kb\n") + kDevs,
                      "t.yaml:2:13: ", "chunk_size '64kb' is not a size; use"));
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: 1.3KiB\n") + kDevs,
                      "t.yaml:2:13: ", "not a whole number of bytes"));
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size:\n") + kDevs,
                      "t.yaml:2:1: ", "chunk_size has no value"));
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: [64KiB]\n") + kDevs,
                      "t.yaml:2:13: ", "chunk_size must be a scalar"));
}

TEST(ChunkSize, Duplicate_Rejected)
{
    EXPECT_TRUE(Fails(std::string("pool: p\nchunk_size: 64KiB\nchunk_size: 64KiB\n") +
                          kDevs,
                      "t.yaml:3:1: ", "duplicate key 'chunk_size'"));
}

TEST(ChunkSize, UnknownKey_ListsChunkSize)
{
    EXPECT_TRUE(Fails(std::string("pool: p\nchunksize: 64KiB\n") + kDevs,
                      "t.yaml:2:1: ",
                      "allowed keys: pool, extent_size, devices, chunk_size"));
}

}  // namespace
