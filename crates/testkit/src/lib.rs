//! Test fixtures for agentrail: a deterministic workload generator of realistic agent sessions,
//! used by crate tests, benchmarks and (later) `agentrail demo`.
//!
//! A session: `agent.session.started`, then steps of `model.decision` (one of several model
//! versions) → `tool.invocation` caused by it (a few errors and timeouts, occasional error bursts
//! of a flaky tool), some decisions reviewed by a human (`human.review` with realistic latencies of
//! seconds to minutes, a few suspiciously fast approvals, some rejections — and sometimes the tool
//! runs anyway), sub-agents (`agent.spawned` and a child session), the odd causal link to an event
//! that never arrives, the odd emitter clock that is off, attributes and classifications, then
//! `agent.session.ended`. Everything follows from the seed.
//!
//! What it is not: it does no I/O and knows nothing of the ledger or the server.
//!
//! ```
//! let events: Vec<_> = agentrail_testkit::Generator::new(7, "acme", 2).take(50).collect();
//! assert_eq!(events.len(), 50);
//! assert!(agentrail_event::validate_value(events[0].clone()).is_ok());
//! ```

use serde_json::{Value, json};
use std::collections::VecDeque;

/// SplitMix64: small, fast, and good enough for test data (no `rand` dependency).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Models the generator attributes decisions to: `(provider, name, version)`.
pub const MODELS: &[(&str, &str, &str)] = &[
    ("openai", "gpt-4o", "2024-08-06"),
    ("openai", "gpt-4o", "2024-11-20"),
    ("anthropic", "claude-sonnet", "4.5"),
    ("anthropic", "claude-sonnet", "4.6"),
    ("acme", "refund-ranker", "3"),
];

/// Tools; `flaky-ledger` is the one that has error bursts.
pub const TOOLS: &[&str] = &[
    "lookup_order",
    "issue_refund",
    "send_email",
    "search_kb",
    "flaky-ledger",
];

pub const REVIEWERS: &[&str] = &["alice@ops", "bob@ops", "carol@risk", "dan@risk"];

/// How the generated traffic looks.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Steps (decision + tool call) per session, uniform in this range.
    pub steps: (u64, u64),
    /// Share of decisions a human reviews.
    pub review_rate: f64,
    /// Share of reviews that are suspiciously fast approvals (< 1 s).
    pub fast_approval_rate: f64,
    /// Share of reviews that reject.
    pub reject_rate: f64,
    /// Share of rejected actions that are executed anyway.
    pub execute_after_reject_rate: f64,
    /// Share of tool calls that fail (outside bursts).
    pub error_rate: f64,
    /// Share of sessions that spawn a sub-agent.
    pub spawn_rate: f64,
    /// Share of events whose `caused_by` names an event that never arrives.
    pub dangling_rate: f64,
    /// Share of events whose emitter clock is off by minutes.
    pub skew_rate: f64,
    /// Milliseconds between consecutive events (mean).
    pub gap_ms: u64,
    /// Bytes of prompt/output text per model decision (mean).
    pub text_bytes: usize,
    /// Share of prompts that quote personal data: the subject's email (the same value each time)
    /// and, in a quarter of them, a phone number and a (Luhn-valid) card number seen once.
    pub pii_rate: f64,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            steps: (2, 8),
            review_rate: 0.3,
            fast_approval_rate: 0.1,
            reject_rate: 0.15,
            execute_after_reject_rate: 0.3,
            error_rate: 0.05,
            spawn_rate: 0.1,
            dangling_rate: 0.01,
            skew_rate: 0.01,
            gap_ms: 700,
            text_bytes: 300,
            pii_rate: 0.0,
        }
    }
}

/// An endless, deterministic stream of valid v1 events for one tenant. Event ids are unique within
/// the stream (`<tenant>-<n>`); sessions interleave (`parallel` open at a time).
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    tenant: String,
    /// What event ids start with (the tenant, unless set).
    ids: String,
    /// What session ids start with (`sess`, unless event ids are prefixed).
    sessions: String,
    profile: Profile,
    parallel: usize,
    /// Emitter time, ms since the epoch.
    now_ms: i64,
    next_id: u64,
    next_session: u64,
    open: Vec<VecDeque<Value>>,
}

const WORDS: &[&str] = &[
    "customer",
    "order",
    "refund",
    "policy",
    "shipping",
    "invoice",
    "account",
    "delay",
    "damaged",
    "replacement",
    "approve",
    "within",
    "limit",
    "priority",
    "escalate",
    "verified",
    "history",
];

impl Generator {
    /// A generator for `tenant` with `parallel` interleaved sessions, starting 2026-08-01.
    pub fn new(seed: u64, tenant: &str, parallel: usize) -> Generator {
        Generator::with_profile(seed, tenant, parallel, Profile::default())
    }

    pub fn with_profile(seed: u64, tenant: &str, parallel: usize, profile: Profile) -> Generator {
        Generator {
            rng: Rng::new(seed ^ 0xA076_1D64_78BD_642F),
            tenant: tenant.to_owned(),
            ids: tenant.to_owned(),
            sessions: "sess".to_owned(),
            profile,
            parallel: parallel.max(1),
            now_ms: 1_785_542_400_000, // 2026-08-01T00:00:00Z
            next_id: 0,
            next_session: 0,
            open: Vec::new(),
        }
    }

    /// The same stream with event ids `<prefix>-<n>` and session ids `<prefix>-sess-<n>`
    /// (distinct runs into one tenant).
    pub fn with_id_prefix(mut self, prefix: &str) -> Generator {
        self.ids = prefix.to_owned();
        self.sessions = format!("{prefix}-sess");
        self
    }

    /// The same stream with its emitter clock starting at `ms` (ms since the epoch).
    pub fn starting_at(mut self, ms: i64) -> Generator {
        self.now_ms = ms;
        self
    }

    fn id(&mut self) -> String {
        let id = format!("{}-{}", self.ids, self.next_id);
        self.next_id += 1;
        id
    }

    fn ts(ms: i64) -> String {
        let t = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        format!("{t:.3}")
    }

    fn text(&mut self) -> String {
        let n = self.profile.text_bytes / 7 + self.rng.below(8) as usize;
        let mut s = String::with_capacity(n * 8);
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            let w: &&str = self.rng.pick(WORDS);
            s.push_str(w);
        }
        s
    }

    /// Personal data a user would paste into a prompt.
    fn pii(&mut self, subject: &str) -> String {
        let mut s = format!(" - reach me at {subject}@mail.example.com");
        if self.rng.chance(0.25) {
            let mut digits: Vec<u8> = vec![4];
            digits.extend((0..14).map(|_| self.rng.below(10) as u8));
            // The Luhn check digit that makes the 16 digits valid.
            let sum: u32 = digits
                .iter()
                .rev()
                .enumerate()
                .map(|(i, &d)| {
                    let d = u32::from(d);
                    if i % 2 == 0 {
                        let x = d * 2;
                        if x > 9 { x - 9 } else { x }
                    } else {
                        d
                    }
                })
                .sum();
            digits.push(((10 - sum % 10) % 10) as u8);
            let card: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
            s.push_str(&format!(
                ", call +1 415 555 {:04}, my card is {card}",
                self.rng.below(10_000)
            ));
        }
        s
    }

    /// Builds one whole session (and a sub-agent's, if spawned) as a queue of events.
    fn session(&mut self) -> VecDeque<Value> {
        let sid = format!("{}-{}", self.sessions, self.next_session);
        self.next_session += 1;
        let agent = format!("agent-{}", self.rng.below(20));
        let user = format!("user-{}", self.rng.below(500));
        let subject = format!("subject-{}", self.rng.below(2000));
        let classification = *self
            .rng
            .pick(&["internal", "confidential", "restricted", "public"]);
        let mut t = self.now_ms;
        let mut out = VecDeque::new();
        let mut emit = |g: &mut Generator, t: &mut i64, mut ev: Value| {
            *t += 1 + g.rng.below(2 * g.profile.gap_ms) as i64;
            let mut occurred = *t;
            if g.rng.chance(g.profile.skew_rate) {
                occurred -= 300_000 + g.rng.below(600_000) as i64;
            }
            ev["schema_version"] = json!("1");
            ev["tenant_id"] = json!(g.tenant);
            ev["occurred_at"] = json!(Generator::ts(occurred));
            ev["data_classification"] = json!(classification);
            ev["attributes"] = json!({"channel": *g.rng.pick(&["chat", "email", "api"]),
                                      "region": *g.rng.pick(&["eu", "us"])});
            out.push_back(ev);
        };
        let start_id = self.id();
        let ev = json!({"event_id": start_id, "event_type": "agent.session.started", "session_id": sid,
                   "agent_id": agent, "subject_id": subject,
                   "actor": {"id": user, "type": "user"},
                   "payload": {"goal": "resolve support ticket"}});
        emit(self, &mut t, ev);
        let steps = self.profile.steps.0
            + self
                .rng
                .below(self.profile.steps.1 - self.profile.steps.0 + 1);
        let mut last = start_id;
        for _ in 0..steps {
            let (provider, name, version) = *self.rng.pick(MODELS);
            let tool = *self.rng.pick(TOOLS);
            let decision_id = self.id();
            let mut causes = vec![json!(last)];
            if self.rng.chance(self.profile.dangling_rate) {
                causes.push(json!(format!(
                    "{}-missing-{}",
                    self.ids,
                    self.rng.below(1000)
                )));
            }
            let mut prompt = self.text();
            if self.profile.pii_rate > 0.0 && self.rng.chance(self.profile.pii_rate) {
                prompt.push_str(&self.pii(&subject));
            }
            let output = self.text();
            let ev = json!({"event_id": decision_id, "event_type": "model.decision", "session_id": sid,
                       "agent_id": agent, "subject_id": subject, "caused_by": causes,
                       "actor": {"id": agent, "type": "agent"},
                       "payload": {"model": {"provider": provider, "name": name, "version": version},
                                   "prompt": {"messages": [{"role": "user", "content": prompt}]},
                                   "output": {"raw": output, "finish_reason": "tool_calls"},
                                   "usage": {"input_tokens": 200 + self.rng.below(2000),
                                             "output_tokens": 20 + self.rng.below(400)},
                                   "latency_ms": 200 + self.rng.below(3000),
                                   "decision": {"kind": "tool_call", "tool_name": tool}}});
            emit(self, &mut t, ev);
            let mut execute = true;
            if self.rng.chance(self.profile.review_rate) {
                let review_id = self.id();
                let presented = t + 50;
                let fast = self.rng.chance(self.profile.fast_approval_rate);
                let reject = !fast && self.rng.chance(self.profile.reject_rate);
                let latency = if fast {
                    50 + self.rng.below(900) as i64
                } else {
                    3_000 + self.rng.below(240_000) as i64
                };
                let decided = presented + latency;
                t = decided;
                let decision = if reject {
                    "reject"
                } else if !fast && self.rng.chance(0.1) {
                    "modify"
                } else {
                    "approve"
                };
                let reviewer = *self.rng.pick(REVIEWERS);
                let ev = json!({"event_id": review_id, "event_type": "human.review", "session_id": sid,
                           "agent_id": agent, "subject_id": subject, "caused_by": [decision_id],
                           "actor": {"id": reviewer, "type": "user", "role": "reviewer"},
                           "payload": {"reviewer": {"id": reviewer, "role": "ops"},
                                       "proposed_action": {"event_id": decision_id,
                                                           "summary": format!("call {tool}")},
                                       "decision": decision,
                                       "presented_at": Generator::ts(presented),
                                       "decided_at": Generator::ts(decided)}});
                emit(self, &mut t, ev);
                last = review_id;
                if reject && !self.rng.chance(self.profile.execute_after_reject_rate) {
                    execute = false;
                }
            } else {
                last = decision_id.clone();
            }
            if execute {
                let tool_id = self.id();
                // One minute in five, the flaky tool mostly fails.
                let burst = tool == "flaky-ledger" && (t / 60_000) % 5 == 0;
                let outcome =
                    if burst && self.rng.chance(0.7) || self.rng.chance(self.profile.error_rate) {
                        *self.rng.pick(&["error", "timeout"])
                    } else {
                        "ok"
                    };
                let ev = json!({"event_id": tool_id, "event_type": "tool.invocation", "session_id": sid,
                           "agent_id": agent, "subject_id": subject, "caused_by": [decision_id],
                           "actor": {"id": agent, "type": "agent"},
                           "payload": {"tool": {"name": tool, "version": "1"},
                                       "input": {"order": self.rng.below(100_000)},
                                       "status": {"outcome": outcome},
                                       "duration_ms": 5 + self.rng.below(2000)}});
                emit(self, &mut t, ev);
                last = tool_id;
            }
        }
        if self.rng.chance(self.profile.spawn_rate) {
            let child_sid = format!("{sid}-sub");
            let child_agent = format!("{agent}-sub");
            let spawn_id = self.id();
            let ev = json!({"event_id": spawn_id, "event_type": "agent.spawned", "session_id": sid,
                       "agent_id": agent, "caused_by": [last],
                       "payload": {"child_agent_id": child_agent, "child_session_id": child_sid,
                                   "task": "look up shipping status"}});
            emit(self, &mut t, ev);
            let sub_id = self.id();
            let (provider, name, version) = *self.rng.pick(MODELS);
            let ev = json!({"event_id": sub_id, "event_type": "model.decision", "session_id": child_sid,
                       "agent_id": child_agent, "caused_by": [spawn_id],
                       "payload": {"model": {"provider": provider, "name": name, "version": version},
                                   "decision": {"kind": "response", "summary": "shipped yesterday"}}});
            emit(self, &mut t, ev);
            last = spawn_id;
        }
        let end_id = self.id();
        let ev = json!({"event_id": end_id, "event_type": "agent.session.ended", "session_id": sid,
                   "agent_id": agent, "caused_by": [last],
                   "payload": {"status": "resolved"}});
        emit(self, &mut t, ev);
        self.now_ms += 1 + self.rng.below(4 * self.profile.gap_ms) as i64;
        out
    }
}

impl Iterator for Generator {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        while self.open.len() < self.parallel {
            let s = self.session();
            self.open.push(s);
        }
        let i = self.rng.below(self.open.len() as u64) as usize;
        let ev = self.open[i].pop_front();
        if self.open[i].is_empty() {
            self.open.swap_remove(i);
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_are_valid_and_deterministic() {
        let a: Vec<Value> = Generator::new(1, "acme", 4).take(2000).collect();
        let b: Vec<Value> = Generator::new(1, "acme", 4).take(2000).collect();
        assert_eq!(a, b);
        let c: Vec<Value> = Generator::new(2, "acme", 4).take(2000).collect();
        assert_ne!(a, c);
        let mut types = std::collections::BTreeMap::new();
        for ev in &a {
            if let Err(e) = agentrail_event::validate_value(ev.clone()) {
                panic!("{ev}: {e}");
            }
            *types
                .entry(ev["event_type"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
        for t in [
            "model.decision",
            "tool.invocation",
            "human.review",
            "agent.spawned",
            "agent.session.started",
            "agent.session.ended",
        ] {
            assert!(
                types.get(t).copied().unwrap_or(0) > 0,
                "no {t} in {types:?}"
            );
        }
        let ids: std::collections::HashSet<_> = a.iter().map(|e| e["event_id"].clone()).collect();
        assert_eq!(ids.len(), a.len());
    }
}

/// Copies a directory tree (a data directory, an export), every copy writable: what whoever
/// owns the data directory can do to sealed (read-only) segments too, and what a test edits.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            let mut p = std::fs::metadata(&dst).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            std::fs::set_permissions(&dst, p).unwrap();
        }
    }
}

/// The `event_id`s of a page of events as the HTTP API answers it (`{"events": [...]}`), in
/// order; tests compare them with what they expect.
pub fn event_ids(page: &serde_json::Value) -> Vec<String> {
    page["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Small helpers the workload benchmarks share.
/// What every erasure-racing test checks of served model decisions (`view=decrypted`, each with
/// its `seq`): those sequenced before the erasure event at `erased_at` read `$erased`, those
/// after it read tokenized, with `plaintext` nowhere. Returns how many were before and after.
pub fn check_erasure_boundary<'a>(
    events: impl IntoIterator<Item = &'a serde_json::Value>,
    erased_at: u64,
    plaintext: &str,
) -> (usize, usize) {
    let (mut before, mut after) = (0, 0);
    for e in events {
        let seq = e["seq"].as_u64().unwrap_or(u64::MAX);
        let prompt = &e["payload"]["prompt"];
        if seq < erased_at {
            before += 1;
            assert!(
                prompt["$erased"].is_object(),
                "seq {seq} before the erasure at {erased_at} reads {prompt}"
            );
        } else {
            after += 1;
            let text = prompt["messages"][0].as_str().unwrap_or_default();
            assert!(
                text.contains("tok_email_") && !text.contains(plaintext),
                "seq {seq} after the erasure reads {prompt}"
            );
        }
    }
    (before, after)
}

pub mod bench {
    use std::time::Duration;

    /// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`, …) in MiB; 0 where there is none.
    pub fn proc_status_mib(field: &str) -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let prefix = format!("{field}:");
        status
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// CPU time (user + system) this process has used so far, in seconds, from `/proc/self/stat`
    /// (in clock ticks of 1/100 s, the Linux default); 0 where there is none.
    pub fn process_cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The command name (field 2) may hold spaces: fields are counted after its `)`.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: f64 = after
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse::<f64>().ok())
            .sum();
        ticks / 100.0
    }

    /// A scratch directory for a benchmark's data, removed when dropped: under
    /// `AGENTRAIL_BENCH_DIR` if set, else the system's temporary directory (`TMPDIR`), never
    /// the source tree `cargo bench` runs in. Says where on stderr: benchmarks write GBs.
    pub fn scratch_dir() -> tempfile::TempDir {
        let base = std::env::var_os("AGENTRAIL_BENCH_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("agentrail-bench-")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("a scratch directory in {}: {e}", base.display()));
        eprintln!(
            "bench data in {} (removed at the end; AGENTRAIL_BENCH_DIR chooses the disk)",
            dir.path().display()
        );
        dir
    }

    /// The value after `--name` on a command line.
    pub fn arg(args: &[String], name: &str) -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    }

    /// The `p` quantile (0..=1) of sorted latencies, in milliseconds; 0 when there are none.
    pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i].as_secs_f64() * 1e3
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn args_and_percentiles() {
            let args: Vec<String> = ["x", "--events", "5", "--keep"].map(String::from).into();
            assert_eq!(arg(&args, "--events").as_deref(), Some("5"));
            assert_eq!(arg(&args, "--keep"), None);
            let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
            assert_eq!(percentile_ms(&lat, 0.5), 51.0);
            assert_eq!(percentile_ms(&lat, 0.99), 99.0);
            assert_eq!(percentile_ms(&[], 0.5), 0.0);
        }

        #[test]
        fn process_cpu_time_grows_with_work() {
            let before = process_cpu_seconds();
            let started = std::time::Instant::now();
            let mut x = 0u64;
            while process_cpu_seconds() - before < 0.05 {
                for _ in 0..100_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "a minute of spinning never counted 50 ms of CPU"
                );
            }
        }
    }
}

/// A real Kafka-protocol broker for tests: `tansu` (crates.io, a Kafka-compatible broker;
/// `.ci/run` installs it), on a port of its own with in-memory storage, killed when dropped.
/// The binary is `$AGENTRAIL_TANSU`, else `tansu` on the `PATH`.
pub mod kafka {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    #[derive(Debug)]
    pub struct Broker {
        child: Child,
        bin: PathBuf,
        port: u16,
    }

    fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("AGENTRAIL_TANSU") {
            return PathBuf::from(p);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "no Kafka-protocol broker for this test: install tansu \
                     (cargo install tansu --version 0.6.0 --no-default-features \
                     --features dynostore, as .ci/run does) or set AGENTRAIL_TANSU"
                )
            })
    }

    impl Broker {
        /// Starts a broker and waits until it takes connections.
        pub fn start() -> Broker {
            let bin = binary();
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("no free port: {e}"));
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(&bin)
                .args(["broker", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/", "--silent"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let broker = Broker { child, bin, port };
            let started = Instant::now();
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the broker did not listen on port {port} within 30 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            broker
        }

        /// `host:port`, for `bootstrap.servers`.
        pub fn bootstrap(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        pub fn create_topic(&self, name: &str, partitions: u32) {
            let out = Command::new(&self.bin)
                .args(["topic", "create", name, "--partitions"])
                .arg(partitions.to_string())
                .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
            assert!(
                out.status.success(),
                "creating topic {name}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    impl Broker {
        /// A producer of one-record batches: tansu 0.6 answers a fetch from an offset inside a
        /// batch with nothing (Kafka sends the whole batch and the client skips what is before
        /// the offset), so a consumer resuming from a committed offset mid-batch would wait
        /// forever. With one record per batch every offset starts one.
        pub fn producer(&self) -> BaseProducer {
            ClientConfig::new()
                .set("bootstrap.servers", self.bootstrap())
                .set("enable.idempotence", "true")
                .set("batch.num.messages", "1")
                .set("linger.ms", "0")
                .create()
                .unwrap_or_else(|e| panic!("producer: {e}"))
        }

        /// Queues one record (waiting while the producer's queue is full).
        pub fn send(
            producer: &BaseProducer,
            topic: &str,
            key: Option<&str>,
            headers: &[(&str, &str)],
            value: &[u8],
        ) {
            let mut h = OwnedHeaders::new();
            for (k, v) in headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let mut r = BaseRecord::<str, [u8]>::to(topic).payload(value).headers(h);
            if let Some(k) = key {
                r = r.key(k);
            }
            loop {
                match producer.send(r) {
                    Ok(()) => return,
                    Err((e, back)) => {
                        assert!(
                            matches!(
                                e,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ),
                            "send to {topic}: {e}"
                        );
                        producer.poll(Duration::from_millis(50));
                        r = back;
                    }
                }
            }
        }

        /// Waits until the broker has every record queued.
        pub fn flush(producer: &BaseProducer) {
            producer
                .flush(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("flush: {e}"));
        }

        /// Reads `topic` from the start (a fresh consumer group) until it has `count` records
        /// or `timeout` passed; returns what it read.
        pub fn read<T>(
            &self,
            topic: &str,
            count: usize,
            timeout: Duration,
            owned: impl Fn(&BorrowedMessage<'_>) -> T,
        ) -> Vec<T> {
            let group = format!("reader-{}-{}", std::process::id(), rand_seed());
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", self.bootstrap())
                .set("group.id", &group)
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap_or_else(|e| panic!("consumer: {e}"));
            c.subscribe(&[topic])
                .unwrap_or_else(|e| panic!("subscribe: {e}"));
            let mut out = Vec::new();
            let started = Instant::now();
            while out.len() < count && started.elapsed() < timeout {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    out.push(owned(&m));
                }
            }
            out
        }
    }

    fn rand_seed() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An S3 API server with Object Lock for tests: moto's server mode (PyPI `moto[server]`;
/// `.ci/run` installs it), on a port of its own, in memory, killed when dropped. The binary is
/// `$AGENTRAIL_MOTO`, else `moto_server` on the `PATH`. Moto enforces what the archive relies
/// on: `If-None-Match: *` on put, COMPLIANCE retention (a locked version cannot be deleted,
/// not even with the governance bypass), and versioning (a put over a key adds a version).
pub mod s3 {
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    #[derive(Debug)]
    pub struct Server {
        child: Child,
        port: u16,
    }

    fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("AGENTRAIL_MOTO") {
            return PathBuf::from(p);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "no S3 API server for this test: pip install 'moto[server]' (as .ci/run \
                     does) or set AGENTRAIL_MOTO"
                )
            })
    }

    impl Server {
        /// Starts a server and waits until it answers.
        pub fn start() -> Server {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("no free port: {e}"));
            let bin = binary();
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let server = Server { child, port };
            let started = Instant::now();
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the S3 server did not listen on port {port} within 60 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            server
        }

        /// Its endpoint URL.
        pub fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// Creates a bucket, with Object Lock enabled (and so versioning) or without.
        pub fn create_bucket(&self, name: &str, object_lock: bool) {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut req = agent.put(&format!("{}/{name}", self.endpoint()));
            if object_lock {
                req = req.header("x-amz-bucket-object-lock-enabled", "true");
            }
            let mut r = req
                .send_empty()
                .unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            assert_eq!(status, 200, "creating bucket {name}: {body}");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A PostgreSQL server for tests: a cluster of its own (`initdb` into a temporary directory,
/// `fsync=off`), on a free loopback port, stopped and removed when dropped. The binaries are
/// found in `$AGENTRAIL_PG_BIN`, else on the `PATH`, else in Debian's
/// `/usr/lib/postgresql/<version>/bin` (`.ci/run` installs the `postgresql` package). As root,
/// the server runs as the `postgres` user (PostgreSQL refuses to run as root).
pub mod postgres {
    use std::net::{TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    #[derive(Debug)]
    pub struct Server {
        child: Option<Child>,
        port: u16,
        dir: tempfile::TempDir,
        bin: PathBuf,
        /// `postgres` when the tests run as root.
        run_as: Option<String>,
        /// Settings (`name=value`) after the defaults.
        settings: Vec<String>,
    }

    fn bin_dir() -> PathBuf {
        if let Some(p) = std::env::var_os("AGENTRAIL_PG_BIN") {
            return PathBuf::from(p);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(d) = std::env::split_paths(&path).find(|d| d.join("initdb").is_file()) {
            // A link on the PATH: the directory holding the rest (pg_ctl, pg_isready).
            return std::fs::canonicalize(d.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(d);
        }
        let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        debian.sort();
        debian.pop().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL for this test: apt-get install postgresql (as .ci/run does) or \
                 set AGENTRAIL_PG_BIN to the directory holding initdb and postgres"
            )
        })
    }

    fn is_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    }

    fn uid_gid(user: &str) -> (u32, u32) {
        let id = |flag: &str| -> u32 {
            let o = Command::new("id")
                .args([flag, user])
                .output()
                .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"));
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|_| {
                    panic!("no user {user} to run PostgreSQL as (tests run as root)")
                })
        };
        (id("-u"), id("-g"))
    }

    impl Server {
        /// Creates a cluster and starts it; waits until it accepts connections.
        pub fn start() -> Server {
            Server::start_with(&[])
        }

        /// [`Server::start`] with settings (`name=value`) over the defaults, e.g. `fsync=on`
        /// for a benchmark.
        pub fn start_with(settings: &[&str]) -> Server {
            let bin = bin_dir();
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
            let run_as = is_root().then(|| "postgres".to_owned());
            if let Some(user) = &run_as {
                let (uid, gid) = uid_gid(user);
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", dir.path().display()));
            }
            let data = dir.path().join("data");
            let out = Server::command(&run_as, &bin.join("initdb"))
                .args(["-D", &data.display().to_string()])
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-N",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ])
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run initdb in {}: {e}", bin.display()));
            assert!(
                out.status.success(),
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("no free port: {e}"));
            let mut server = Server {
                child: None,
                port,
                dir,
                bin,
                run_as,
                settings: settings.iter().map(|s| s.to_string()).collect(),
            };
            server.resume();
            server
        }

        fn command(run_as: &Option<String>, program: &Path) -> Command {
            match run_as {
                Some(user) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", user, "--"]).arg(program);
                    c
                }
                None => Command::new(program),
            }
        }

        /// Starts the server process (again, after [`Server::stop`]) and waits for it.
        pub fn resume(&mut self) {
            assert!(self.child.is_none(), "the PostgreSQL server is running");
            let data = self.dir.path().join("data");
            let child = Server::command(&self.run_as, &self.bin.join("postgres"))
                .args(["-D", &data.display().to_string()])
                .args(["-p", &self.port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args([
                    "-c",
                    &format!("unix_socket_directories={}", self.dir.path().display()),
                ])
                .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=200", "-c", "shared_buffers=128MB"])
                .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
            self.child = Some(child);
            let started = Instant::now();
            loop {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ready() {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "PostgreSQL did not accept connections on port {} within 60 s",
                    self.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        fn ready(&self) -> bool {
            Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        }

        /// Stops the server at once (`pg_ctl stop -m immediate`: no checkpoint, every backend
        /// gone, crash recovery at the next start); [`Server::resume`] starts it again.
        pub fn stop(&mut self) {
            if let Some(mut c) = self.child.take() {
                let data = self.dir.path().join("data");
                let _ = Server::command(&self.run_as, &self.bin.join("pg_ctl"))
                    .args([
                        "-D",
                        &data.display().to_string(),
                        "stop",
                        "-m",
                        "immediate",
                        "-w",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        pub fn port(&self) -> u16 {
            self.port
        }

        /// A URL for the superuser on database `db`.
        pub fn url(&self, db: &str) -> String {
            format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
        }

        /// Runs SQL through `psql` as the superuser (on `db`), returning its unaligned output.
        pub fn psql(&self, db: &str, sql: &str) -> String {
            let out = Command::new("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-d", db, "-c", sql])
                .output()
                .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
            assert!(
                out.status.success(),
                "psql {sql}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        /// Creates a database and returns the superuser's URL for it.
        pub fn create_db(&self, db: &str) -> String {
            self.psql("postgres", &format!("CREATE DATABASE {db}"));
            self.url(db)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop();
        }
    }
}
