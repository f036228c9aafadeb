"""storage/identity.py: the names replaced in /etc/hosts."""

from lxpy.lifecycle.identity import renamed_host_files, replace_names


def test_replace_names_in_a_hosts_line():
    line = "127.0.1.1\tgold gold.lxpy gold-2 xgold gold_1 goldy\n"
    assert replace_names(line, ["gold"], "web") == \
        "127.0.1.1\tweb web.lxpy gold-2 xgold gold_1 goldy\n"


def test_renamed_host_files_takes_the_old_hostname_too():
    hostname, hosts = renamed_host_files(b"gold.example\n", b"127.0.1.1 gold.example gold\n",
                                         "gold", "web")
    assert hostname == b"web\n" and hosts == b"127.0.1.1 web web\n"
    assert renamed_host_files(None, b"127.0.0.1 localhost\n", "gold", "web")[1] is None
