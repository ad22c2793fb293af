//! The fanout, rooms and relay scenarios: who is in which room, who sends, and the plans the
//! engine runs.

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

use super::api::{Api, User};
use super::args::Args;
use super::conn::Kind;
use super::load::{self, LoadReport, Plan, SenderSpec, SocketSpec};
use super::util;

/// Users, rooms and the sockets that follow them, set up over the REST API.
pub struct Population {
    pub users: Vec<User>,
    pub room_ids: Vec<String>,
    /// Members of each room by user index; the first owns it.
    pub layout: Vec<Vec<usize>>,
    pub setup_seconds: f64,
}

/// What `--users-file` keeps: enough to open the same sockets after a server restart.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    /// Unix seconds when the oldest token was issued.
    saved_at: u64,
    /// Id, username and access token.
    users: Vec<(String, String, String)>,
    room_ids: Vec<String>,
    layout: Vec<Vec<usize>>,
}

/// Saved tokens older than this are replaced by logging in again (they live 15 minutes).
const TOKENS_FRESH_SECS: u64 = 12 * 60;

fn unix_secs() -> u64 {
    util::unix_nanos() / 1_000_000_000
}

/// Writes the file; `issued_at` is when the first of its tokens was issued.
fn save(path: &str, issued_at: u64, users: &[User], room_ids: &[String], layout: &[Vec<usize>]) -> anyhow::Result<()> {
    let saved = Saved {
        saved_at: issued_at,
        users: users.iter().map(|u| (u.id.clone(), u.username.clone(), u.token.clone())).collect(),
        room_ids: room_ids.to_vec(),
        layout: layout.to_vec(),
    };
    Ok(std::fs::write(path, serde_json::to_vec(&saved)?)?)
}

/// Signs up `users` users and creates one room per entry of `layout` — or, with `--users-file`
/// naming an existing file of the same shape, reuses the users and rooms it holds: with its
/// tokens while they are under 12 minutes old (so a restarted server hashes no password before
/// its memory is measured), else logging every user in again.
///
/// # Errors
/// When a sign-up or room call fails, or the file cannot be read or written or does not match.
pub async fn populate(api: &Api, args: &Args, users: usize, layout: Vec<Vec<usize>>) -> anyhow::Result<Population> {
    let started = Instant::now();
    if let Some(path) = args.users_file.as_deref().filter(|p| std::path::Path::new(p).exists()) {
        let saved: Saved = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        anyhow::ensure!(
            saved.users.len() == users && saved.layout == layout,
            "{path}: holds {} users in {} rooms, not this run's {users} in {}; delete it or name another",
            saved.users.len(),
            saved.layout.len(),
            layout.len()
        );
        let mut users: Vec<User> =
            saved.users.into_iter().map(|(id, username, token)| User { id, username, token }).collect();
        if unix_secs() > saved.saved_at + TOKENS_FRESH_SECS {
            let issued_at = unix_secs();
            let bar = util::bar(args.progress, users.len() as u64, "log in");
            let tokens: Vec<String> = futures::stream::iter(users.iter())
                .map(|u| {
                    let bar = bar.clone();
                    async move {
                        let token = api.login(&u.username).await;
                        bar.inc(1);
                        token
                    }
                })
                .buffered(args.setup_concurrency.max(1))
                .try_collect()
                .await?;
            bar.finish_and_clear();
            for (user, token) in users.iter_mut().zip(tokens) {
                user.token = token;
            }
            save(path, issued_at, &users, &saved.room_ids, &layout)?;
        }
        let setup_seconds = started.elapsed().as_secs_f64();
        return Ok(Population { users, room_ids: saved.room_ids, layout, setup_seconds });
    }
    let issued_at = unix_secs();
    let bar = util::bar(args.progress, users as u64, "sign up");
    let signed = api.signup_many(&args.run_id, users, args.setup_concurrency, &bar).await?;
    bar.finish_and_clear();
    let bar = util::bar(args.progress, layout.len() as u64, "rooms");
    let room_ids = api.create_rooms(&signed, &layout, args.setup_concurrency, &bar).await?;
    bar.finish_and_clear();
    if let Some(path) = &args.users_file {
        save(path, issued_at, &signed, &room_ids, &layout)?;
    }
    Ok(Population { users: signed, room_ids, layout, setup_seconds: started.elapsed().as_secs_f64() })
}

/// How many users a scenario signs up, and its rooms as user indices (the first owns the room).
pub fn layout_for(args: &Args) -> (usize, Vec<Vec<usize>>) {
    use super::args::Scenario as S;
    let users = args.users;
    let layout = match args.scenario {
        S::Fanout => vec![(0..users).collect()],
        // Members drawn round-robin, so fewer users than rooms * members share rooms.
        S::Rooms => (0..args.rooms)
            .map(|r| {
                let mut members: Vec<usize> = Vec::with_capacity(args.members);
                for j in 0..args.members {
                    let u = (r * args.members + j) % users;
                    if !members.contains(&u) {
                        members.push(u);
                    }
                }
                members
            })
            .collect(),
        S::Idle => {
            let m = args.members.max(1);
            (0..users.div_ceil(m)).map(|r| (r * m..((r + 1) * m).min(users)).collect()).collect()
        }
        S::History => return (1, vec![vec![0]]),
        // Sender `u` sends to room `u % rooms`, of which it is a member.
        S::BurstArchive => {
            let rooms = args.rooms.max(1);
            (0..rooms).map(|r| (0..users).filter(|u| u % rooms == r).collect()).collect()
        }
        // Signs up its own users as part of what it measures, and makes no rooms.
        S::Relay | S::Logins => return (0, Vec::new()),
    };
    (users, layout)
}

impl Population {
    /// `per_user` sockets for each user, following the user's rooms; socket `u * per_user + k`.
    pub fn sockets(&self, per_user: usize) -> Vec<SocketSpec> {
        let mut rooms_of: Vec<Vec<usize>> = vec![Vec::new(); self.users.len()];
        for (r, members) in self.layout.iter().enumerate() {
            for &u in members {
                rooms_of[u].push(r);
            }
        }
        self.users
            .iter()
            .zip(rooms_of)
            .flat_map(|(user, follows)| {
                (0..per_user).map(move |_| SocketSpec {
                    token: Some(user.token.clone()),
                    follows: follows.clone(),
                    url: None,
                })
            })
            .collect()
    }

    /// A member's token per room: the owner's.
    pub fn room_tokens(&self) -> Vec<String> {
        self.layout
            .iter()
            .map(|members| {
                members.first().and_then(|&u| self.users.get(u)).map(|u| u.token.clone()).unwrap_or_default()
            })
            .collect()
    }
}

/// `count` indices spread evenly over `0..total`.
fn spread(count: usize, total: usize) -> Vec<usize> {
    (0..count).map(|i| i * total / count.max(1)).collect()
}

fn chat_plan(args: &Args, pop: &Population, mut sockets: Vec<SocketSpec>, senders: Vec<SenderSpec>, api: &Api) -> Plan {
    if let Some(url) = &args.senders_ws {
        for sender in &senders {
            if let Some(spec) = sockets.get_mut(sender.socket) {
                spec.url = Some(url.clone());
            }
        }
    }
    Plan {
        target: "chat",
        kind: Kind::Chat,
        url: args.ws.clone(),
        sockets,
        room_ids: pop.room_ids.clone(),
        room_tokens: pop.room_tokens(),
        senders,
        rate: args.rate,
        window: args.window,
        duration: args.duration,
        messages: args.messages,
        size: args.size,
        retry_rate_limited: args.rate <= 0.0,
        pace_on_echo: args.pace_on_echo,
        drain: args.drain,
        server_pid: args.server_pid,
        connect_concurrency: args.connect_concurrency,
        connect_rate: args.connect_rate,
        progress: args.progress,
        log_check: args.log_check.then(|| api.clone()),
    }
}

/// The fanout pattern against the bare relay: `connections` sockets, the same senders and rate.
pub fn relay_plan(args: &Args, url: &str, connections: usize) -> Plan {
    let senders: Vec<SenderSpec> = spread(args.senders, connections)
        .into_iter()
        .enumerate()
        .map(|(i, socket)| SenderSpec { socket, room: i })
        .collect();
    let follows: Vec<usize> = (0..senders.len()).collect();
    Plan {
        target: "relay",
        kind: Kind::Relay,
        url: url.to_owned(),
        sockets: (0..connections).map(|_| SocketSpec { token: None, follows: follows.clone(), url: None }).collect(),
        room_ids: Vec::new(),
        room_tokens: Vec::new(),
        senders,
        rate: args.rate,
        window: args.window,
        duration: args.duration,
        messages: args.messages,
        size: args.size,
        retry_rate_limited: false,
        pace_on_echo: true,
        drain: args.drain,
        server_pid: args.baseline_pid,
        connect_concurrency: args.connect_concurrency,
        connect_rate: args.connect_rate,
        progress: args.progress,
        log_check: None,
    }
}

/// One room of every user; senders spread over the sockets. With `--baseline`, the relay too.
///
/// # Errors
/// When setting up fails or no socket opens.
pub async fn fanout(args: &Args) -> anyhow::Result<(Vec<LoadReport>, f64)> {
    let api = Api::new(&args.url, &args.metrics_url)?;
    let (users, layout) = layout_for(args);
    let pop = populate(&api, args, users, layout).await?;
    let sockets = pop.sockets(args.conns_per_user);
    let senders =
        spread(args.senders, sockets.len()).into_iter().map(|socket| SenderSpec { socket, room: 0 }).collect();
    let total = sockets.len();
    let mut reports = vec![load::run(chat_plan(args, &pop, sockets, senders, &api)).await?];
    if let Some(url) = &args.baseline {
        reports.push(load::run(relay_plan(args, url, total)).await?);
    }
    Ok((reports, pop.setup_seconds))
}

/// `rooms` rooms of `members`, members drawn round-robin from the users; one sender per room
/// (up to `senders`), the owner's first socket.
///
/// # Errors
/// When setting up fails or no socket opens.
pub async fn rooms(args: &Args) -> anyhow::Result<(Vec<LoadReport>, f64)> {
    let api = Api::new(&args.url, &args.metrics_url)?;
    let (users, layout) = layout_for(args);
    let pop = populate(&api, args, users, layout).await?;
    let sockets = pop.sockets(args.conns_per_user);
    let senders = spread(args.senders, args.rooms)
        .into_iter()
        .filter_map(|room| {
            let owner = *pop.layout.get(room)?.first()?;
            Some(SenderSpec { socket: owner * args.conns_per_user, room })
        })
        .collect();
    let report = load::run(chat_plan(args, &pop, sockets, senders, &api)).await?;
    Ok((vec![report], pop.setup_seconds))
}

/// The fanout pattern against the relay alone.
///
/// # Errors
/// When no socket opens.
pub async fn relay(args: &Args) -> anyhow::Result<(Vec<LoadReport>, f64)> {
    let url = args.baseline.clone().unwrap_or_else(|| args.ws.clone());
    Ok((vec![load::run(relay_plan(args, &url, args.connections)).await?], 0.0))
}

/// The plan burst-archive and history use to fill rooms: `per_user` sockets per user, sender `i`
/// on socket `i` sending to the first room it follows; closed loop, rate limits retried.
pub fn fill_plan(args: &Args, pop: &Population, per_user: usize, senders: usize, messages: u64, api: &Api) -> Plan {
    let sockets = pop.sockets(per_user);
    let specs = sockets
        .iter()
        .enumerate()
        .take(senders)
        .filter_map(|(socket, spec)| Some(SenderSpec { socket, room: *spec.follows.first()? }))
        .collect();
    let mut plan = chat_plan(args, pop, sockets, specs, api);
    plan.rate = 0.0;
    plan.messages = Some(messages);
    plan.retry_rate_limited = true;
    plan
}
