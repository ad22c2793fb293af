//! A Redis Cluster master killed under load: every acknowledged message is archived exactly once.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapter_redis::RedisMode;
use application::messaging::SendText;
use application::ports::{MessageLog as _, SeqRange, Take};
use application::Messaging;
use domain::{ClientMsgId, Message, MessageId, MessageText, RoomId, Seq, User};
use tempfile::TempDir;

use crate::support::{archived, World};

const MESSAGES: usize = 2000;
const SENDERS: usize = 4;
const ROOMS: usize = 16;
/// How long a sender keeps retrying one message, as a client with its `client_msg_id` would.
const GIVE_UP: Duration = Duration::from_secs(60);
/// Between one sender's sends: paced so that sends go on well after the kill.
const PACE: Duration = Duration::from_millis(5);

/// A private 3-master, 3-replica Redis Cluster on free ports, stopped when dropped.
struct Cluster {
    dir: TempDir,
    nodes: Vec<(u16, Option<Child>)>,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut cluster = Self { dir, nodes: Vec::new() };
        for _ in 0..6 {
            let port = free_port();
            let child = cluster.spawn(port);
            cluster.nodes.push((port, Some(child)));
        }
        for (port, _) in &cluster.nodes {
            wait_until(|| redis_cli(*port, &["PING"]).is_some_and(|pong| pong.trim() == "PONG"), "a node answers");
        }
        let addresses: Vec<String> = cluster.nodes.iter().map(|(port, _)| format!("127.0.0.1:{port}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_healthy();
        cluster
    }

    /// A node on `port` whose state lives in its own directory, so a restart finds its identity.
    fn spawn(&self, port: u16) -> Child {
        let dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&dir).expect("a node directory");
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000"])
            .args(["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test.sh installs it)")
    }

    /// Every node says the cluster is ok, three masters each have a replica, and every replica
    /// finished its first sync (until then it could not take over).
    fn wait_healthy(&self) {
        wait_until(
            || {
                self.nodes.iter().all(|(port, _)| {
                    redis_cli(*port, &["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok"))
                        && redis_cli(*port, &["INFO", "replication"])
                            .is_some_and(|info| info.contains("role:master") || info.contains("master_link_status:up"))
                }) && self.replicas() == 3
            },
            "the cluster is ok with a synced replica per master",
        );
    }

    fn replicas(&self) -> usize {
        let live = self.nodes.iter().find(|(_, child)| child.is_some()).expect("a live node").0;
        redis_cli(live, &["CLUSTER", "NODES"])
            .map(|nodes| nodes.lines().filter(|l| l.contains("slave") && !l.contains("fail")).count())
            .unwrap_or(0)
    }

    fn seeds(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(|(port, _)| format!("redis://127.0.0.1:{port}")).collect();
        urls.join(",")
    }

    /// The port of the live master that serves `room`'s keys, as a live node sees it; none while
    /// a failover is under way.
    fn master_of(&self, room: RoomId) -> Option<u16> {
        let any = self.nodes.iter().find(|(_, child)| child.is_some()).expect("a live node").0;
        let slot: u16 = redis_cli(any, &["CLUSTER", "KEYSLOT", &room.to_string()])
            .and_then(|s| s.trim().parse().ok())
            .expect("a slot");
        let nodes = redis_cli(any, &["CLUSTER", "NODES"]).expect("the node table");
        for line in nodes.lines().filter(|l| l.contains("master") && !l.contains("fail")) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).expect("a port");
            let serves = fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(from), Ok(to)) if (from..=to).contains(&slot))
            });
            if serves {
                return Some(port);
            }
        }
        None
    }

    /// The port of the replica of the master on `port`.
    fn replica_of(&self, port: u16) -> u16 {
        let id = redis_cli(port, &["CLUSTER", "MYID"]).expect("the master's id");
        let nodes = redis_cli(port, &["CLUSTER", "NODES"]).expect("the node table");
        nodes
            .lines()
            .find(|l| l.contains("slave") && l.contains(id.trim()))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|address| address.split(['@', ':']).nth(1))
            .and_then(|p| p.parse().ok())
            .expect("the master has a replica")
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the node on `port`, as a stalled host would.
    fn signal(&self, port: u16, signal: &str) {
        let node = self.nodes.iter().find(|(p, _)| *p == port).expect("a node on that port");
        let pid = node.1.as_ref().expect("a running node").id();
        let sent = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// SIGKILL: no chance to hand over.
    fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|(p, _)| *p == port).expect("a node on that port");
        if let Some(mut child) = node.1.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reaped");
        }
    }

    /// Starts the node again on its old port and directory: it rejoins as a replica.
    fn restart(&mut self, port: u16) {
        let child = self.spawn(port);
        let node = self.nodes.iter_mut().find(|(p, _)| *p == port).expect("a node on that port");
        node.1 = Some(child);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A free port whose cluster bus port (10 000 higher) is free too.
fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends one message until it is acknowledged, with the same `client_msg_id` every time, as a
/// client does.
async fn send_until_acked(messaging: &Messaging, actor: &User, room: RoomId, text: &str) -> Message {
    let request = SendText {
        room_id: room,
        client_msg_id: Some(ClientMsgId::new(text).expect("a client message id")),
        text: MessageText::new(text).expect("a text"),
    };
    let started = Instant::now();
    loop {
        match messaging.send_text(actor, request.clone()).await {
            Ok(sent) => return sent.message,
            Err(e) => {
                assert!(started.elapsed() < GIVE_UP, "message {text} was never acknowledged: {e:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and MongoDB (scripts/test.sh)"]
async fn a_master_killed_under_two_thousand_sends_with_its_replica_behind_loses_and_repeats_no_acknowledged_message() {
    // Arrange: a cluster with a replica per master, acks that wait for a replica, and a worker.
    let mut cluster = Cluster::start();
    let seeds = cluster.seeds();
    let world = World::with(|config| {
        config.url = seeds;
        config.mode = RedisMode::Cluster;
        config.min_replicas = 1;
    })
    .await;
    let mut rooms: Vec<(User, RoomId)> = Vec::new();
    for _ in 0..ROOMS {
        rooms.push(world.reader_and_room().await);
    }
    let messaging = world.messaging(Arc::new(world.store.clone()));
    let victim = cluster.master_of(rooms[0].1).expect("a master serves the first room");
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(parking_lot::Mutex::new(std::collections::BTreeSet::<String>::new()));
    let archiver = world.archiver(world.reconnect_log().await, &world.store);
    let worker = tokio::spawn({
        let (stop, paused, errors) = (stop.clone(), paused.clone(), errors.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                if paused.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                match archiver.archive_batch("w1", 200).await {
                    Ok(report) if report.claimed > 0 => {}
                    // Idle, or the cluster is failing over: try again shortly.
                    Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(e) => {
                        errors.lock().insert(format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    });

    // Act: four senders. Once a quarter of the messages are acked, the worker pauses and the
    // replica of the first room's master stalls, cut off, for most of a second, so it falls
    // behind on what nobody archived yet; then the master is killed, the replica thaws and takes over, the worker
    // goes on, and the old master comes back (empty, so as a replica).
    let acked_count = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (messaging, rooms, acked_count) = (messaging.clone(), rooms.clone(), acked_count.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..MESSAGES / SENDERS {
                    let (owner, room) = &rooms[(s + n) % ROOMS];
                    acked.push(send_until_acked(&messaging, owner, *room, &format!("{s}-{n}")).await);
                    tokio::time::sleep(PACE).await;
                    acked_count.fetch_add(1, Ordering::Relaxed);
                }
                acked
            })
        })
        .collect();
    while acked_count.load(Ordering::Relaxed) < MESSAGES / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let heir = cluster.replica_of(victim);
    paused.store(true, Ordering::Relaxed);
    cluster.signal(heir, "-STOP");
    // Cut the link too: what was sent already would wait in the stalled replica's socket buffer.
    redis_cli(victim, &["CLIENT", "KILL", "TYPE", "replica"]).expect("the replica link is cut");
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.kill(victim);
    cluster.signal(heir, "-CONT");
    paused.store(false, Ordering::Relaxed);
    let first_room = rooms[0].1;
    wait_until(
        || cluster.master_of(first_room).is_some_and(|m| m != victim),
        "a replica took over the killed master's slots",
    );
    cluster.restart(victim);
    let mut acked: Vec<Message> = Vec::new();
    for sender in senders {
        acked.extend(sender.await.expect("a sender"));
    }

    // Assert: the archive ends up with every acknowledged message, each once, under its own seq.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut by_room: HashMap<RoomId, Vec<Message>> = HashMap::new();
    loop {
        by_room.clear();
        for (_, room) in &rooms {
            by_room.insert(*room, archived(&world.store, *room).await);
        }
        let stored: HashSet<MessageId> = by_room.values().flatten().map(|m| m.id).collect();
        if acked.iter().all(|m| stored.contains(&m.id)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    worker.await.expect("the worker");
    let stored: HashMap<MessageId, &Message> = by_room.values().flatten().map(|m| (m.id, m)).collect();
    let missing: Vec<&Message> = acked.iter().filter(|m| !stored.contains_key(&m.id)).collect();
    if let Some(first) = missing.first() {
        let around = SeqRange {
            after: first.seq.get().checked_sub(1).and_then(Seq::new),
            before: Some(first.seq.next()),
            ..SeqRange::default()
        };
        let cached = world.log.fetch(first.room_id, around, Take::Oldest(1)).await;
        let nodes = cluster.nodes.iter().map(|(p, c)| format!("{p}:{}", c.is_some())).collect::<Vec<_>>();
        let table = redis_cli(cluster.nodes.iter().find(|(_, c)| c.is_some()).expect("live").0, &["CLUSTER", "NODES"]);
        let prefix = &world.config.key_prefix;
        let ready = redis_cli(heir, &["-c", "SMEMBERS", &format!("{prefix}archive:ready")]);
        let slot = redis_cli(heir, &["CLUSTER", "KEYSLOT", &first.room_id.to_string()]);
        let mut queues = String::new();
        for port in [heir, victim] {
            for key in
                redis_cli(port, &["--scan", "--pattern", &format!("{prefix}archive:{{*}}")]).unwrap_or_default().lines()
            {
                let len = redis_cli(port, &["XLEN", key]).unwrap_or_default();
                let pending = redis_cli(port, &["XPENDING", key, "archivers"]).unwrap_or_default();
                queues.push_str(&format!("{port} {key} len {} pending {}\n", len.trim(), pending.replace('\n', " ")));
            }
        }
        panic!(
            "{} acknowledged messages were never archived; the first, seq {} of room {} (victim {victim}, \
             heir {heir}), is cached as {cached:?}; nodes {nodes:?}\n{table:?}\nthe worker's errors: {:?}\n\
             slot {slot:?}, ready {ready:?}\n{queues}",
            missing.len(),
            first.seq,
            first.room_id,
            errors.lock(),
        );
    }
    for message in &acked {
        assert_eq!(stored[&message.id], message, "archived as acknowledged");
    }
    for (room, messages) in &by_room {
        let seqs: HashSet<u64> = messages.iter().map(|m| m.seq.get()).collect();
        assert_eq!(seqs.len(), messages.len(), "room {room}: a seq archived twice");
    }
    assert_eq!(acked.len(), MESSAGES);
}
