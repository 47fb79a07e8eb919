"""Ports of kuduraft consensus_peers-test scenarios onto the fake clock and transport."""

from __future__ import annotations

from fakes import LeaderFixture, Sent, ok, server_error_reply, update_reply

from nodes.log import OpId
from nodes.peer import RpcOutcome


def test_remote_peer_commits_twenty_ops_after_one_signal() -> None:
    """TestRemotePeer: 20 ops appended, one signal; commit index reaches 20 and the remote's last
    received is 2.20 (local + one remote form the majority of 3 voters)."""
    fx = LeaderFixture(voters=("A", "B", "C"), peers=["B"], term=2, n_entries=0)
    fx.append(20, signal=False)
    fx.peers["B"].signal_request(False)
    fx.settle()
    assert fx.queue.committed_index == 20
    assert fx.queue.peers["B"].last_received == OpId(2, 20)
    assert fx.followers["B"].last == OpId(2, 20)


def test_remote_peers_commit_with_first_and_all_replicated_after_second() -> None:
    """TestRemotePeers: two remotes, the second delays its reply; op 1 commits with the first
    remote alone; after the delayed reply all-replicated reaches 1; op 2 stays uncommitted for
    10 ms without signals, and commits after one signal to remote 1."""
    fx = LeaderFixture(voters=("A", "B", "C"), n_entries=0, manual=["C"], notify_commits=False)
    fx.append(1)
    fx.settle()
    assert fx.queue.committed_index == 1
    assert fx.queue.marks.all_replicated_index == 0
    c = fx.followers["C"]
    while fx.transport.pending("C"):
        s = fx.transport.pending("C")[0]
        s.reply_body(c.handle(s.body))
    assert fx.queue.marks.all_replicated_index == 1
    fx.append(1, signal=False)
    fx.clock.advance(0.010)
    assert fx.queue.committed_index == 1
    fx.peers["B"].signal_request(False)
    fx.settle()
    assert fx.queue.committed_index == 2


def test_close_when_remote_peer_does_not_make_progress() -> None:
    """TestCloseWhenRemotePeerDoesntMakeProgress: a remote always answering "last received 0.0"
    makes the peer send continuously; Close still returns and later replies are ignored."""
    fx = LeaderFixture(voters=("A", "B", "C"), n_entries=5, committed=0, manual=["C"])
    fx.responder("B", lambda s: ok(update_reply(1, (0, 0), (0, 0), 0)))
    fx.transport.latency_s = 0.001
    fx.peers["B"].signal_request(True)
    fx.clock.advance(0.05)
    assert len(fx.transport.to("B")) >= 40  # back-to-back, no heartbeat gaps
    fx.peers["B"].close()
    n = len(fx.transport.to("B"))
    fx.clock.advance(2.0)
    assert len(fx.transport.to("B")) == n
    assert "B" not in fx.queue.peers


def test_dont_send_one_rpc_per_write_when_peer_is_down() -> None:
    """TestDontSendOneRpcPerWriteWhenPeerIsDown: first reply OK (commit 1), then every reply is a
    server-level error; 99 writes spaced 2 ms, each signalled; fewer than 5 UpdateConsensus calls
    in total."""
    fx = LeaderFixture(voters=("A", "B", "C"), peers=["B"], n_entries=0)
    calls = [0]

    def respond(sent: Sent) -> RpcOutcome:
        calls[0] += 1
        if calls[0] == 1:
            return ok(update_reply(1, (1, 1), (1, 1), 1))
        return ok(server_error_reply("UNKNOWN_ERROR", "injected"))
    fx.responder("B", respond)
    fx.append(1, signal=False)
    fx.peers["B"].signal_request(True)
    fx.settle()
    assert fx.queue.committed_index == 1
    for _ in range(2, 101):
        fx.append(1)  # appends and signals the peer
        fx.clock.advance(0.002)
    assert len(fx.transport.to("B")) < 5
    assert fx.peers["B"].failed_attempts >= 1
