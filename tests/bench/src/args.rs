//! Command-line options of `chat-bench`, parsed by hand: a scenario, then `--flag value` pairs.

use std::time::Duration;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One room, many subscribers, a few senders.
    Fanout,
    /// Many small rooms, one sender each.
    Rooms,
    /// Many authenticated sockets held open, sending nothing.
    Idle,
    /// Latency of `GET /rooms/{id}/messages`.
    History,
    /// Messages sent as fast as accepted, then the time until the archive holds them all.
    BurstArchive,
    /// The fanout pattern against the bare relay only.
    Relay,
    /// A flood of sign-ups and logins, and the server's RSS after it.
    Logins,
}

impl Scenario {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "fanout" => Self::Fanout,
            "rooms" => Self::Rooms,
            "idle" => Self::Idle,
            "history" => Self::History,
            "burst-archive" => Self::BurstArchive,
            "relay" => Self::Relay,
            "logins" => Self::Logins,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Rooms => "rooms",
            Self::Idle => "idle",
            Self::History => "history",
            Self::BurstArchive => "burst-archive",
            Self::Relay => "relay",
            Self::Logins => "logins",
        }
    }
}

pub const USAGE: &str = "\
chat-bench <scenario> [options]

Drives a running chat server (or the bare relay, examples/relay.rs) over real WebSockets and HTTP.

Scenarios (defaults in brackets):
  fanout         1 room [--users 1000] subscribers, [--senders 10] senders at [--rate 10]/s each
  rooms          [--rooms 1000] rooms of [--members 10]; [--users rooms*members]; one sender per room
                 at [--rate 1]/s
  idle           [--users 1000] x [--conns-per-user 10] sockets held [--hold 60] s; RSS per socket
  history        fills a room with [--messages 2000] from [--senders 10] sockets of one user,
                 then [--requests 5000] GETs of /rooms/{id}/messages by [--concurrency 8] clients
  burst-archive  [--messages 100000] sent as fast as accepted by [--senders 10] senders (one room
                 each, [--window 32] in flight each), then the time until the archive holds them
  relay          the fanout pattern against the bare relay: [--connections 1000] sockets
  logins         signs up [--users 1000] new users, then logs each in, [--concurrency 100] requests
                 in flight; 503 and 429 are retried after Retry-After (at most 10 s). With
                 --server-pid: RSS before, peak (sampled every 100 ms), and 2 s after the last answer

Target:
  --url URL              HTTP base of the api app [http://127.0.0.1:8080]
  --ws URL               socket URL [the --url host, path /ws]
  --senders-ws URL       fanout, rooms, history, burst-archive: the senders' sockets connect here
                         instead of --ws, e.g. socket node 1 while the subscribers are on node 2
                         of the split shape [--ws]
  --metrics-url URL      where /metrics counts archived messages (worker or chat) [--url]
  --baseline URL         ws:// URL of the bare relay; fanout and idle then measure it too, in the
                         same run (for `relay`, the relay's URL is --baseline or --ws)
  --server-pid PID       read the server's VmRSS from /proc: memory per connection, or around logins
  --baseline-pid PID     the same for the relay

Load:
  --users N  --rooms N  --members N  --conns-per-user N  --connections N (relay)
  --senders N            sending sockets
  --rate R               messages per second per sender [fanout 10, rooms 1]; 0 = closed loop,
                         --window in flight (burst-archive and history fill always use 0)
  --window N             messages in flight per sender when --rate 0 [32]
  --pace echo|ack        when --rate 0, what frees a slot: the sender's own copy arriving through
                         the room's fan-out, or the ack [echo]. With `ack` a fast sender outruns
                         its own socket's outbound queue (see docs/benchmarks.md)
  --duration SECS        how long senders send [30; burst-archive and history: 600, a bound]
  --messages N           total messages (fanout/rooms: a cap; burst-archive, history: the count)
  --size BYTES           message text length [100]
  --hold SECS            idle: how long sockets are held [60]
  --requests N  --concurrency N   history; --concurrency also logins
  --drain SECS           how long to wait for deliveries after the last send [15]
  --archive-timeout SECS burst-archive: how long to wait for the archive [600]
  --setup-concurrency N  parallel sign-ups and room calls [16]
  --connect-concurrency N parallel socket handshakes [64]
  --connect-rate N       handshakes started per second, 0 = unpaced [fanout 200, others 1000]:
                         each user's first socket sends presence to every socket of its rooms,
                         so a 1000-member room opened at once is a million frames

Output:
  --json                 print the results as JSON (the table goes to stderr)
  --no-progress          no progress bars
  --no-log-check         skip paging each room's history after the run
  --run-id ID            prefix of user names [random]
  --users-file PATH      save the users and rooms this run creates there, or reuse them if the
                         file exists (e.g. across a server restart; tokens live 15 minutes)
  --setup-only           only create the users and rooms (with --users-file), then stop

Exit status: 0 clean, 1 error, 2 bad arguments, 3 messages were lost or duplicated.
";

/// Every option, with the scenario's defaults already applied.
#[derive(Debug, Clone)]
pub struct Args {
    pub scenario: Scenario,
    pub url: String,
    pub ws: String,
    /// Where the senders' sockets connect, when not `ws`.
    pub senders_ws: Option<String>,
    pub metrics_url: String,
    pub baseline: Option<String>,
    pub server_pid: Option<u32>,
    pub baseline_pid: Option<u32>,
    pub users: usize,
    pub rooms: usize,
    pub members: usize,
    pub conns_per_user: usize,
    pub connections: usize,
    pub senders: usize,
    /// Messages per second per sender; zero means closed loop with `window` in flight.
    pub rate: f64,
    pub window: usize,
    /// In closed loop, free a window slot at the sender's own echo (true) or at the ack.
    pub pace_on_echo: bool,
    pub duration: Duration,
    /// Total messages; `None` means only the duration bounds sending.
    pub messages: Option<u64>,
    pub size: usize,
    pub hold: Duration,
    pub requests: u64,
    pub concurrency: usize,
    pub drain: Duration,
    pub archive_timeout: Duration,
    pub setup_concurrency: usize,
    pub connect_concurrency: usize,
    /// Handshakes per second; 0 for no pacing.
    pub connect_rate: f64,
    pub json: bool,
    pub progress: bool,
    pub log_check: bool,
    pub run_id: String,
    /// Users and rooms to reuse, or where to save them.
    pub users_file: Option<String>,
    /// Only sign up and create rooms (to save them with `--users-file`).
    pub setup_only: bool,
    pub help: bool,
}

/// The options as given, before scenario defaults fill the gaps.
#[derive(Default)]
struct Given {
    url: Option<String>,
    ws: Option<String>,
    senders_ws: Option<String>,
    metrics_url: Option<String>,
    baseline: Option<String>,
    server_pid: Option<u32>,
    baseline_pid: Option<u32>,
    users: Option<usize>,
    rooms: Option<usize>,
    members: Option<usize>,
    conns_per_user: Option<usize>,
    connections: Option<usize>,
    senders: Option<usize>,
    rate: Option<f64>,
    window: Option<usize>,
    pace_on_echo: Option<bool>,
    duration: Option<f64>,
    messages: Option<u64>,
    size: Option<usize>,
    hold: Option<f64>,
    requests: Option<u64>,
    concurrency: Option<usize>,
    drain: Option<f64>,
    archive_timeout: Option<f64>,
    setup_concurrency: Option<usize>,
    connect_concurrency: Option<usize>,
    connect_rate: Option<f64>,
    run_id: Option<String>,
    users_file: Option<String>,
}

fn number<T: std::str::FromStr>(flag: &str, raw: &str) -> anyhow::Result<T> {
    raw.parse().map_err(|_| anyhow::anyhow!("{flag}: expected a number, got {raw:?}"))
}

fn positive(flag: &str, raw: &str) -> anyhow::Result<usize> {
    let n: usize = number(flag, raw)?;
    anyhow::ensure!(n > 0, "{flag}: expected at least 1");
    Ok(n)
}

fn seconds(flag: &str, raw: &str) -> anyhow::Result<f64> {
    let s: f64 = number(flag, raw)?;
    anyhow::ensure!((0.0..=86_400.0).contains(&s), "{flag}: expected 0 to 86400 seconds");
    Ok(s)
}

impl Args {
    /// Parses the arguments after the program name.
    ///
    /// # Errors
    /// An unknown scenario or flag, a missing value, or a value that is not a valid number.
    pub fn parse(raw: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut scenario = None;
        let mut g = Given::default();
        let (mut json, mut progress, mut log_check, mut help) = (false, true, true, false);
        let mut setup_only = false;
        let mut it = raw.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            match flag.as_str() {
                "--json" => json = true,
                "--no-progress" => progress = false,
                "--no-log-check" => log_check = false,
                "--setup-only" => setup_only = true,
                "-h" | "--help" => help = true,
                f if f.starts_with("--") => {
                    let value = match inline {
                        Some(v) => v,
                        None => it.next().ok_or_else(|| anyhow::anyhow!("{f}: missing value"))?,
                    };
                    let v = value.as_str();
                    match f {
                        "--url" => g.url = Some(value.trim_end_matches('/').to_owned()),
                        "--ws" => g.ws = Some(value),
                        "--senders-ws" => g.senders_ws = Some(value),
                        "--metrics-url" => g.metrics_url = Some(value.trim_end_matches('/').to_owned()),
                        "--baseline" => g.baseline = Some(value),
                        "--server-pid" => g.server_pid = Some(number(f, v)?),
                        "--baseline-pid" => g.baseline_pid = Some(number(f, v)?),
                        "--users" => g.users = Some(positive(f, v)?),
                        "--rooms" => g.rooms = Some(positive(f, v)?),
                        "--members" => g.members = Some(positive(f, v)?),
                        "--conns-per-user" => g.conns_per_user = Some(positive(f, v)?),
                        "--connections" => g.connections = Some(positive(f, v)?),
                        "--senders" => g.senders = Some(positive(f, v)?),
                        "--rate" => g.rate = Some(seconds(f, v)?),
                        "--window" => g.window = Some(positive(f, v)?),
                        "--pace" => {
                            g.pace_on_echo = Some(match v {
                                "echo" => true,
                                "ack" => false,
                                _ => anyhow::bail!("--pace: echo or ack"),
                            });
                        }
                        "--duration" => g.duration = Some(seconds(f, v)?),
                        "--messages" => g.messages = Some(number(f, v)?),
                        "--size" => g.size = Some(positive(f, v)?),
                        "--hold" => g.hold = Some(seconds(f, v)?),
                        "--requests" => g.requests = Some(number(f, v)?),
                        "--concurrency" => g.concurrency = Some(positive(f, v)?),
                        "--drain" => g.drain = Some(seconds(f, v)?),
                        "--archive-timeout" => g.archive_timeout = Some(seconds(f, v)?),
                        "--setup-concurrency" => g.setup_concurrency = Some(positive(f, v)?),
                        "--connect-concurrency" => g.connect_concurrency = Some(positive(f, v)?),
                        "--connect-rate" => g.connect_rate = Some(seconds(f, v)?),
                        "--run-id" => g.run_id = Some(value),
                        "--users-file" => g.users_file = Some(value),
                        _ => anyhow::bail!("unknown option {f}"),
                    }
                }
                other if scenario.is_none() => {
                    scenario =
                        Some(Scenario::parse(other).ok_or_else(|| anyhow::anyhow!("unknown scenario {other:?}"))?);
                }
                other => anyhow::bail!("unexpected argument {other:?}"),
            }
        }
        if help {
            return Ok(Self::defaults(Scenario::Fanout, Given::default(), json, progress, log_check, true));
        }
        let scenario = scenario.ok_or_else(|| anyhow::anyhow!("missing scenario"))?;
        let mut args = Self::defaults(scenario, g, json, progress, log_check, false);
        args.setup_only = setup_only;
        args.check()?;
        Ok(args)
    }

    fn defaults(scenario: Scenario, g: Given, json: bool, progress: bool, log_check: bool, help: bool) -> Self {
        use Scenario as S;
        let url = g.url.unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
        let ws = g.ws.unwrap_or_else(|| {
            let host = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            let scheme = if url.starts_with("https://") { "wss" } else { "ws" };
            format!("{scheme}://{host}/ws")
        });
        let rooms = g.rooms.unwrap_or(match scenario {
            S::Rooms => 1000,
            S::BurstArchive => g.senders.unwrap_or(10),
            _ => 1,
        });
        let members = g.members.unwrap_or(10);
        let users = g.users.unwrap_or(match scenario {
            S::Fanout | S::Idle | S::Relay | S::Logins => 1000,
            S::Rooms => rooms * members,
            S::History => 1,
            S::BurstArchive => g.senders.unwrap_or(10),
        });
        let senders = g.senders.unwrap_or(match scenario {
            S::Rooms => rooms,
            _ => 10,
        });
        let rate = g.rate.unwrap_or(match scenario {
            S::Rooms => 1.0,
            S::BurstArchive | S::History => 0.0,
            _ => 10.0,
        });
        let messages = g.messages.or(match scenario {
            S::BurstArchive => Some(100_000),
            S::History => Some(2000),
            _ => None,
        });
        Self {
            scenario,
            metrics_url: g.metrics_url.unwrap_or_else(|| url.clone()),
            url,
            ws,
            senders_ws: g.senders_ws,
            baseline: g.baseline,
            server_pid: g.server_pid,
            baseline_pid: g.baseline_pid,
            users,
            rooms,
            members,
            conns_per_user: g.conns_per_user.unwrap_or(if scenario == S::Idle { 10 } else { 1 }),
            connections: g.connections.unwrap_or(1000),
            senders,
            rate,
            window: g.window.unwrap_or(32),
            pace_on_echo: g.pace_on_echo.unwrap_or(true),
            duration: Duration::from_secs_f64(g.duration.unwrap_or(match scenario {
                S::BurstArchive | S::History => 600.0,
                _ => 30.0,
            })),
            messages,
            size: g.size.unwrap_or(100),
            hold: Duration::from_secs_f64(g.hold.unwrap_or(60.0)),
            requests: g.requests.unwrap_or(5000),
            concurrency: g.concurrency.unwrap_or(if scenario == S::Logins { 100 } else { 8 }),
            drain: Duration::from_secs_f64(g.drain.unwrap_or(15.0)),
            archive_timeout: Duration::from_secs_f64(g.archive_timeout.unwrap_or(600.0)),
            setup_concurrency: g.setup_concurrency.unwrap_or(16),
            connect_concurrency: g.connect_concurrency.unwrap_or(64),
            connect_rate: g.connect_rate.unwrap_or(if scenario == S::Fanout { 200.0 } else { 1000.0 }),
            json,
            progress,
            log_check,
            run_id: g.run_id.unwrap_or_else(random_run_id),
            users_file: g.users_file,
            setup_only: false,
            help,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        use Scenario as S;
        anyhow::ensure!(
            self.run_id.chars().all(|c| c.is_ascii_alphanumeric()) && (1..=12).contains(&self.run_id.len()),
            "--run-id: 1 to 12 letters or digits"
        );
        // A message carries `t=<nanos>;s=<sender>;n=<n>;`: about 40 bytes before padding.
        anyhow::ensure!((48..=4000).contains(&self.size), "--size: 48 to 4000 bytes");
        anyhow::ensure!(
            !self.setup_only || self.users_file.is_some(),
            "--setup-only: give --users-file to keep the setup"
        );
        match self.scenario {
            S::Fanout => {
                anyhow::ensure!(self.senders <= self.users * self.conns_per_user, "--senders: at most one per socket");
            }
            S::Rooms => {
                anyhow::ensure!(self.members >= 2, "--members: at least 2");
                anyhow::ensure!(self.members <= self.users, "--members: at most --users");
                anyhow::ensure!(self.senders <= self.rooms, "--senders: at most one per room");
            }
            S::BurstArchive => {
                anyhow::ensure!(self.users >= self.senders, "--users: at least --senders");
                anyhow::ensure!(self.rooms <= self.senders, "--rooms: at most --senders (each sender sends to one)");
            }
            S::Relay => {
                anyhow::ensure!(
                    self.baseline.is_some() || self.ws != "ws://127.0.0.1:8080/ws",
                    "relay: give the relay's address with --baseline ws://… or --ws ws://…"
                );
                anyhow::ensure!(self.senders <= self.connections, "--senders: at most --connections");
            }
            S::Logins => {
                // Its sign-ups are what it measures: nothing to set up or to reuse.
                anyhow::ensure!(
                    self.users_file.is_none() && !self.setup_only,
                    "logins: signs up new users each run; --users-file and --setup-only do not apply"
                );
            }
            S::Idle | S::History => {}
        }
        Ok(())
    }
}

fn random_run_id() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> anyhow::Result<Args> {
        Args::parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn scenario_defaults_fill_what_is_not_given() {
        let args = parse("rooms --rooms 20").unwrap();

        assert_eq!((args.rooms, args.members, args.users, args.senders), (20, 10, 200, 20));
        assert_eq!(args.ws, "ws://127.0.0.1:8080/ws");
    }

    #[test]
    fn flags_take_values_inline_or_separately() {
        let args = parse("fanout --users=50 --senders 5 --url http://127.0.0.1:18090/ --rate 0").unwrap();

        assert_eq!((args.users, args.senders), (50, 5));
        assert_eq!(args.url, "http://127.0.0.1:18090");
        assert_eq!(args.ws, "ws://127.0.0.1:18090/ws");
        assert!(args.rate.abs() < f64::EPSILON);
    }

    #[test]
    fn senders_may_connect_to_another_node() {
        let split = parse("fanout --ws ws://127.0.0.1:18202/ws --senders-ws ws://127.0.0.1:18201/ws").unwrap();
        let one = parse("fanout --ws ws://127.0.0.1:18202/ws").unwrap();

        assert_eq!(split.ws, "ws://127.0.0.1:18202/ws");
        assert_eq!(split.senders_ws.as_deref(), Some("ws://127.0.0.1:18201/ws"));
        assert_eq!(one.senders_ws, None);
    }

    #[test]
    fn logins_defaults_to_the_issues_flood_and_takes_the_servers_pid() {
        let defaults = parse("logins").unwrap();
        let given = parse("logins --users 50 --concurrency 5 --server-pid 4242 --url http://127.0.0.1:18080").unwrap();

        assert_eq!((defaults.scenario, defaults.users, defaults.concurrency), (Scenario::Logins, 1000, 100));
        assert_eq!(defaults.server_pid, None);
        assert_eq!((given.users, given.concurrency, given.server_pid), (50, 5, Some(4242)));
        assert_eq!(given.url, "http://127.0.0.1:18080");
        assert!(parse("logins --concurrency 0").is_err());
        assert!(parse("logins --server-pid me").is_err());
        assert!(parse("logins --users-file /tmp/u.json").is_err());
    }

    #[test]
    fn unknown_flags_and_scenarios_are_refused() {
        assert!(parse("fanout --usres 5").is_err());
        assert!(parse("fanut").is_err());
        assert!(parse("fanout --users").is_err());
        assert!(parse("fanout --users 0").is_err());
    }
}
