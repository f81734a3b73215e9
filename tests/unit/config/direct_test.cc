// Unit tests for `direct:` on a device in the pool definition
// (config/config.c, issue 14): true / false / not given; bad values and
// remote devices refused with FILE:LINE:COL and nothing returned.
#include <gtest/gtest.h>

#include <errno.h>
#include <string.h>

#include <string>

#include "config/vdconfig.h"

namespace
{

int Parse(const std::string &yaml, vd_conf_pool **out, std::string *err)
{
    char buf[1024] = "";
    int rc = vd_conf_parse("t.yaml", yaml.data(), yaml.size(), out, buf,
                           sizeof(buf));
    *err = buf;
    return rc;
}

std::string Pool(const std::string &dev0_extra, const std::string &dev1_extra)
{
    return "pool: p\ndevices:\n"
           "  - name: a\n    path: /tmp/vdlvm-direct-a.img\n    size: 64MiB\n" +
           dev0_extra +
           "  - name: b\n    path: /tmp/vdlvm-direct-b.img\n    size: 64MiB\n" +
           dev1_extra;
}

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
    if (e.rfind(prefix, 0) != 0 || e.find(what) == std::string::npos)
        return ::testing::AssertionFailure() << "message: " << e;
    return ::testing::AssertionSuccess();
}

TEST(DirectConfig, TrueFalseAndNotGiven)
{
    vd_conf_pool *c = nullptr;
    std::string e;
    ASSERT_EQ(Parse(Pool("    direct: true\n", ""), &c, &e), 0) << e;
    ASSERT_EQ(c->ndevs, 2u);
    EXPECT_EQ(c->devs[0].direct, 1);
    EXPECT_EQ(c->devs[1].direct, 0); // not given: files buffered, block
                                     // devices O_DIRECT (pool/dev.c)
    vd_conf_free(c);
    c = nullptr;
    ASSERT_EQ(Parse(Pool("", "    direct: false\n"), &c, &e), 0) << e;
    EXPECT_EQ(c->devs[0].direct, 0);
    EXPECT_EQ(c->devs[1].direct, -1);
    vd_conf_free(c);
}

TEST(DirectConfig, NotABoolean_FileLineColumn)
{
    // YAML 1.1's yes/on and quoted strings are refused as ambiguous
    EXPECT_TRUE(Fails(Pool("    direct: yes\n", ""), "t.yaml:6:13: ",
                      "device 'a': direct 'yes' is not a boolean; use true "
                      "or false"));
    EXPECT_TRUE(Fails(Pool("", "    direct: \"true\"\n"), "t.yaml:9:13: ",
                      "direct"));
    EXPECT_TRUE(
        Fails(Pool("    direct: 1\n", ""), "t.yaml:6:13: ", "not a boolean"));
    EXPECT_TRUE(Fails(Pool("    direct: [true]\n", ""), "t.yaml:6:", "direct"));
}

TEST(DirectConfig, RemoteDevice_Refused)
{
    std::string y = "pool: p\ndevices:\n"
                    "  - name: r\n    iscsi: iscsi://nodeb/iqn.2026-01.x:t/1\n"
                    "    direct: true\n";
    EXPECT_TRUE(Fails(y, "t.yaml:5:5: ",
                      "device 'r': direct is only valid for a local device "
                      "(path)"));
    std::string r = "pool: p\ndevices:\n"
                    "  - name: r\n    rbd: {pool: rbd, image: i}\n"
                    "    node: ceph1\n    direct: false\n";
    EXPECT_TRUE(Fails(r, "t.yaml:6:5: ", "direct is only valid"));
}

} // namespace
