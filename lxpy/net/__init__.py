"""Container networking, in three parts:

    plan.prepare(cfg, name, lxpath, running)  what interfaces a container gets, checked
                                              against the host (NetworkError; nothing made)
    setup.setup(plan, pid)                    make them for the netns of pid (an ExitStack
                                              undoes them); setup.teardown(name, lxpath)
    records                                   what is set up, as JSON under /run/lxpy/net

The network types are the table plan.TYPES; bridge.py is lxpy-net's managed bridge,
forward.py the published ports, rtnl.py the netlink reads (rtnl.addresses for
lxpy-ls and lxpy-info)."""
