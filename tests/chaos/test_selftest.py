"""The checkers can fail: with fencing deliberately broken
(PGW_TEST_DISABLE_FENCING=1, a test-only switch: pgwarden skips fencing and
never checks its own lease), the minority-primary partition must be caught
as a double primary (a) or as a commit on the old primary after the new one
served (b). With the fence reverted to what it was before issue 15
(PGW_TEST_FENCE_POSTMASTER_GROUP=1: SIGKILL to the postmaster's process
group, which holds the postmaster alone), the busy-session part of (b) must
catch the long statement that commits after the new primary's first write.
Not part of the report table."""
import os

import pytest

from test_chaos import peer_ips

SWITCH = b"PGW_TEST_DISABLE_FENCING"
GROUP_SWITCH = b"PGW_TEST_FENCE_POSTMASTER_GROUP"


def binary_has_switch(switch=SWITCH):
    path = os.environ.get("PGW_BIN")
    if not path or not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        return switch in f.read()


@pytest.mark.slow
@pytest.mark.once
def test_checkers_catch_disabled_fencing(chaos):
    if not binary_has_switch():
        pytest.skip("this pgwarden has no PGW_TEST_DISABLE_FENCING switch")
    ctx = chaos("selftest-fencing-disabled", env={"PGW_TEST_DISABLE_FENCING": "1"})
    p = ctx.begin()
    ctx.faults.cut_peers(p.ns, peer_ips(ctx, p))
    ctx.mark_fault()
    ctx.wait_new_primary(30)
    ctx.hold(3)
    ctx.faults.heal_net(p.ns)
    ctx.mark_heal()
    res = ctx.finish(lease_cut=True, selftest=True, converge_limit=20)
    v = res["violations"]
    print(f"\n[selftest] violations found with fencing disabled: {v}")
    assert any(x.startswith("(a)") or x.startswith("(b)") for x in v), \
        f"the checkers missed a primary that was never fenced: {res}"


@pytest.mark.slow
@pytest.mark.once
def test_busy_checker_catches_a_postmaster_group_fence(chaos):
    if not binary_has_switch(GROUP_SWITCH):
        pytest.skip("this pgwarden has no PGW_TEST_FENCE_POSTMASTER_GROUP switch")
    ctx = chaos("selftest-fence-postmaster-group", env={"PGW_TEST_FENCE_POSTMASTER_GROUP": "1"})
    p = ctx.begin()
    ctx.faults.cut_peers(p.ns, peer_ips(ctx, p))
    ctx.mark_fault()
    ctx.wait_new_primary(30)
    # long enough for the long statement running at the fault to commit
    ctx.hold(8)
    ctx.faults.heal_net(p.ns)
    ctx.mark_heal()
    res = ctx.finish(lease_cut=True, selftest=True, converge_limit=30)
    v = res["violations"]
    print(f"\n[selftest] violations found with the postmaster-group fence: {v}")
    assert any(x.startswith("(b) the busy long-insert") for x in v), \
        f"the busy-session checker missed a backend that outlived the fence: {res}"
