//! PII and secret detectors (DESIGN.md §4). What is found, and what a match covers:
//!
//! - emails: any script in the local part and the domain (`jörg@müller.de`), and the usual
//!   obfuscations, whole (`jane(at)example.com`, `jane [at] example [dot] com`,
//!   `jane at example dot com`); see `email.rs`;
//! - phone numbers: E.164 and common national formats, 7–15 digits;
//! - payment cards: every card inside a run of digit groups, not only a whole run (a CVV or a
//!   quantity next to a card does not hide it), by Luhn and the networks' prefixes and
//!   lengths; see `card.rs`;
//! - IBANs: either case, unbroken or grouped, known country and length, mod 97; `iban.rs`;
//! - US SSNs (not 000, 666 or 9xx areas), IPv4 and IPv6 addresses;
//! - secrets: the gitleaks rules (vendored in `src/rules/`, MIT), fixed provider patterns,
//!   JWTs, private key blocks, the value given to a secret-sounding key (`password: …`,
//!   `"api_key": "…"`; the value, not the key name, is the match), `Bearer`/`Basic`
//!   credentials and AWS secret access keys named by their context; see `secret.rs`.
//!
//! Each detector is a regular expression for candidates plus a check that throws out
//! look-alikes (a 16-digit order number that fails Luhn is not a card, `token=null` is no
//! secret). Most text holds nothing: one pass of a `RegexSet` of cheap triggers (the gitleaks
//! rules' keywords among them) decides which detectors run at all.
//!
//! Matches never overlap. Where two do, the kind listed first in [`Kind`] wins (a secret over an
//! email over an IBAN, a card, an SSN, an IP address, a phone number: the checked kinds before
//! the loose ones), then the longer match, then the earlier; the loser is dropped whole.
//! Custom detectors rank as secrets.

mod card;
mod email;
mod iban;
mod secret;

use regex::Regex;
use std::sync::OnceLock;

/// What a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Secret,
    Email,
    Iban,
    Card,
    Ssn,
    Ip,
    Phone,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Secret,
        Kind::Email,
        Kind::Iban,
        Kind::Card,
        Kind::Ssn,
        Kind::Ip,
        Kind::Phone,
    ];

    /// The name used in tokens (`tok_<name>_…`) and in tenant policies.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Email => "email",
            Kind::Iban => "iban",
            Kind::Card => "card",
            Kind::Ssn => "ssn",
            Kind::Ip => "ip",
            Kind::Phone => "phone",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One detected value: `text[start..end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub kind: Kind,
    /// For custom detectors, their name; else the kind's.
    pub label: String,
    pub start: usize,
    pub end: usize,
}

/// Which detectors run, and extra ones a tenant adds.
#[derive(Debug, Clone)]
pub struct Detectors {
    pub enabled: Vec<Kind>,
    /// `(name, regex)`: every match is a value of type `name`.
    pub custom: Vec<(String, Regex)>,
}

impl Default for Detectors {
    fn default() -> Detectors {
        Detectors {
            enabled: Kind::ALL.to_vec(),
            custom: Vec::new(),
        }
    }
}

/// A built-in detector that runs only when its trigger matched.
#[derive(Debug, Clone, Copy)]
enum Builtin {
    Email,
    EmailObfuscated,
    Phone,
    Card,
    Iban,
    Ssn,
    Ipv4,
    Ipv6,
    /// The key=value, `Bearer`/`Basic` and AWS-context secret rules.
    Context,
    /// `scheme://user:password@host`.
    UrlCredentials,
    /// The fixed provider patterns, [`secret::FIXED`].
    Fixed,
    /// Any gitleaks rule's keyword.
    Keywords,
}

struct Patterns {
    /// One cheap pattern per detector (and per gitleaks rule, its keywords): one pass over the
    /// text tells which detectors need to run at all.
    triggers: regex::RegexSet,
    trigger_of: Vec<Builtin>,
    /// The gitleaks rules' keywords, found in one pass as gitleaks does (Aho-Corasick over
    /// lower-cased text).
    keywords: secret::Keywords,
    email: Regex,
    email_obfuscated: Regex,
    phone: Regex,
    card_run: Regex,
    iban: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
    fixed: Vec<Regex>,
    key_value: Regex,
    bearer: Regex,
    basic: Regex,
    aws_secret: Regex,
    url_credentials: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        // These literals are fixed and tested; a failure to compile is a bug caught by any test.
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| panic!("detector regex {s}: {e}"));
        // The email patterns take letters of every script: their lazy DFA outgrows the default
        // cache on ordinary text and the regex crate then falls back to its slowest engine (a
        // PikeVM, 5x slower on the ingest bench's text, `detect_throughput` (c)).
        let big = |s: &str| {
            regex::RegexBuilder::new(s)
                .dfa_size_limit(8 << 20)
                .build()
                .unwrap_or_else(|e| panic!("detector regex {s}: {e}"))
        };
        let phone = concat!(
            r"(?:\+[1-9][0-9]{0,2}[ .-]?(?:\(?[0-9]{1,4}\)?[ .-]?){1,4}[0-9]{2,4}",
            r"|\(?(?-u:\b)[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}(?-u:\b)",
            r"|(?-u:\b)0[0-9]{1,4}[ -][0-9]{3,4}[ -]?[0-9]{3,4}(?-u:\b)",
            r"|(?-u:\b)0[0-9](?:[ .-][0-9]{2}){4}(?-u:\b))",
        );
        let ssn = r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)";
        let ipv4 = r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)";
        let ipv6 = r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}";
        let email = email::plain();
        let obfuscated = email::obfuscated();
        let keywords = secret::Keywords::new(secret::gitleaks());
        let t: Vec<(Builtin, String)> = vec![
            (Builtin::Email, "@".into()),
            (Builtin::EmailObfuscated, email::OBFUSCATED_TRIGGER.into()),
            (Builtin::Phone, r"[0-9](?:[ .()-]{0,2}[0-9]){6}".into()),
            (Builtin::Card, card::TRIGGER.into()),
            (Builtin::Iban, iban::TRIGGER.into()),
            (Builtin::Ssn, ssn.into()),
            (
                Builtin::Ipv4,
                r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]".into(),
            ),
            (
                Builtin::Ipv6,
                r"::|(?i-u)[0-9a-f]{1,4}:[0-9a-f]{1,4}:".into(),
            ),
            (Builtin::Context, secret::CONTEXT_TRIGGER.into()),
            (Builtin::UrlCredentials, "://".into()),
            (Builtin::Fixed, secret::FIXED_TRIGGER.into()),
            (Builtin::Keywords, keywords.trigger()),
        ];
        Patterns {
            keywords,
            // The set is searched for all its patterns at once; a lazy DFA cache larger than
            // the default keeps it from being cleared and rebuilt over and over.
            triggers: regex::RegexSetBuilder::new(t.iter().map(|(_, s)| s))
                .dfa_size_limit(32 << 20)
                .build()
                .unwrap_or_else(|e| panic!("detector triggers: {e}")),
            trigger_of: t.into_iter().map(|(k, _)| k).collect(),
            email: big(&email),
            email_obfuscated: big(&obfuscated),
            phone: re(phone),
            card_run: re(card::RUN),
            iban: re(iban::CANDIDATE),
            ssn: re(ssn),
            ipv4: re(ipv4),
            ipv6: re(ipv6),
            fixed: secret::FIXED.iter().map(|s| re(s)).collect(),
            key_value: re(secret::KEY_VALUE),
            bearer: re(secret::BEARER),
            basic: re(secret::BASIC),
            aws_secret: re(secret::AWS_SECRET),
            url_credentials: re(secret::URL_CREDENTIALS),
        }
    })
}

/// Luhn checksum over the digits of `s`.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// Whether `s` (in either case, with or without spaces between groups) is exactly an IBAN:
/// a known country, its length, mod 97.
pub fn iban_ok(s: &str) -> bool {
    iban::iban_len(s) == Some(s.len())
}

fn ssn_ok(text: &str, start: usize, end: usize) -> bool {
    let s = &text[start..end];
    let area = &s[0..3];
    let group = &s[4..6];
    let serial = &s[7..11];
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// The text just before `start` and just after `end`, as two characters each side at most.
fn around(text: &str, start: usize, end: usize) -> (Vec<char>, Vec<char>) {
    let before: Vec<char> = text[..start].chars().rev().take(2).collect();
    let after: Vec<char> = text[end..].chars().take(2).collect();
    (before, after)
}

/// An IPv4 address, not part of a longer dotted number (`1.2.3.4.5`) or version (`10.20.30.40-beta`).
fn ipv4_ok(text: &str, start: usize, end: usize) -> bool {
    let (b, a) = around(text, start, end);
    let joined = |sep: &[char], x: &[char]| {
        x.len() == 2 && sep.contains(&x[0]) && x[1].is_ascii_alphanumeric()
    };
    text[start..end].parse::<std::net::Ipv4Addr>().is_ok()
        && !joined(&['.', '-'], &a)
        && !joined(&['.'], &b)
}

/// An IPv6 address standing alone: `std::vector` and `a::b` are not addresses.
fn ipv6_ok(text: &str, start: usize, end: usize) -> bool {
    let s = &text[start..end];
    let (b, a) = around(text, start, end);
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == ':');
    s.matches(':').count() >= 2
        && !word(b.first())
        && !word(a.first())
        && s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// A phone number of 7–15 digits that is a whole run of digit groups, not a piece of a longer
/// one (a failed IBAN's or SSN's digits are no phone number).
fn phone_ok(text: &str, start: usize, end: usize) -> bool {
    let (b, a) = around(text, start, end);
    let joined =
        |x: &[char]| x.len() == 2 && matches!(x[0], ' ' | '.' | '-') && x[1].is_ascii_digit();
    let n = digits(&text[start..end]).len();
    (7..=15).contains(&n) && !joined(&b) && !joined(&a)
}

/// Every match in `text`, non-overlapping, in order.
pub fn detect(text: &str, d: &Detectors) -> Vec<Match> {
    let p = patterns();
    let mut all: Vec<Match> = Vec::new();
    let hits = p.triggers.matches(text);
    // Most text holds nothing: one pass over it answers that for every built-in detector.
    if d.custom.is_empty() && !hits.matched_any() {
        return Vec::new();
    }
    let mut run = [false; 12];
    for i in hits.iter() {
        run[p.trigger_of[i] as usize] = true;
    }
    let hit = |b: Builtin| run[b as usize];
    let on = |k: Kind| d.enabled.contains(&k);
    let mut add = |kind: Kind, start: usize, end: usize| {
        all.push(Match {
            kind,
            label: kind.name().into(),
            start,
            end,
        });
    };
    let mut spans: Vec<(usize, usize)> = Vec::new();
    if on(Kind::Secret) {
        for re in p.fixed.iter().filter(|_| hit(Builtin::Fixed)) {
            for m in re.find_iter(text) {
                spans.push((m.start(), m.end()));
            }
        }
        let rules_all = secret::gitleaks();
        if hit(Builtin::Keywords) {
            for r in p.keywords.rules_in(text) {
                rules_all[r].find(text, &mut spans);
            }
        }
        if hit(Builtin::Context) {
            for c in p.key_value.captures_iter(text) {
                spans.extend(secret::key_value_span(text, &c));
            }
            let group = |re: &Regex, ok: fn(&str) -> bool, spans: &mut Vec<(usize, usize)>| {
                for c in re.captures_iter(text) {
                    if let Some(g) = c.get(1).filter(|g| ok(g.as_str())) {
                        spans.push((g.start(), g.end()));
                    }
                }
            };
            group(&p.bearer, secret::bearer_ok, &mut spans);
            group(&p.basic, secret::basic_ok, &mut spans);
            group(&p.aws_secret, |_| true, &mut spans);
        }
        if hit(Builtin::UrlCredentials) {
            for c in p.url_credentials.captures_iter(text) {
                if let Some(g) = c
                    .get(1)
                    .filter(|g| secret::key_value_ok("password", g.as_str()))
                {
                    spans.push((g.start(), g.end()));
                }
            }
        }
        for (s, e) in spans.drain(..) {
            add(Kind::Secret, s, e);
        }
    }
    if on(Kind::Email) {
        if hit(Builtin::Email) {
            for m in p.email.find_iter(text) {
                if email::plain_ok(text, m.start(), m.end()) {
                    add(Kind::Email, m.start(), m.end());
                }
            }
        }
        if hit(Builtin::EmailObfuscated) {
            for m in p.email_obfuscated.find_iter(text) {
                if email::ends_cleanly(text, m.end()) {
                    add(Kind::Email, m.start(), m.end());
                }
            }
        }
    }
    if on(Kind::Iban) && hit(Builtin::Iban) {
        for m in p.iban.find_iter(text) {
            if let Some(n) = iban::iban_len(m.as_str()) {
                add(Kind::Iban, m.start(), m.start() + n);
            }
        }
    }
    if on(Kind::Card) && hit(Builtin::Card) {
        for m in p.card_run.find_iter(text) {
            let after_plus = text[..m.start()].ends_with('+');
            card::find_in_run(m.as_str(), m.start(), after_plus, &mut spans);
        }
        for (s, e) in spans.drain(..) {
            add(Kind::Card, s, e);
        }
    }
    let mut checked = |kind: Kind, t: Builtin, re: &Regex, ok: fn(&str, usize, usize) -> bool| {
        if on(kind) && hit(t) {
            for m in re.find_iter(text) {
                if ok(text, m.start(), m.end()) {
                    add(kind, m.start(), m.end());
                }
            }
        }
    };
    checked(Kind::Ssn, Builtin::Ssn, &p.ssn, ssn_ok);
    checked(Kind::Ip, Builtin::Ipv4, &p.ipv4, ipv4_ok);
    checked(Kind::Ip, Builtin::Ipv6, &p.ipv6, ipv6_ok);
    checked(Kind::Phone, Builtin::Phone, &p.phone, phone_ok);
    for (name, re) in &d.custom {
        for m in re.find_iter(text) {
            if m.start() < m.end() {
                all.push(Match {
                    kind: Kind::Secret,
                    label: name.clone(),
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }
    resolve_overlaps(all)
}

/// Keeps non-overlapping matches: the kind listed first, then the longest, then the earliest
/// wins; the result is in text order.
fn resolve_overlaps(mut all: Vec<Match>) -> Vec<Match> {
    all.sort_by(|a, b| {
        a.kind
            .cmp(&b.kind)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    // Kept matches by start; they never overlap, so one neighbour on each side decides.
    let mut kept: std::collections::BTreeMap<usize, Match> = std::collections::BTreeMap::new();
    for m in all {
        let before = kept.range(..=m.start).next_back();
        let after = kept.range(m.start..).next();
        let free = before.is_none_or(|(_, b)| b.end <= m.start)
            && after.is_none_or(|(_, a)| a.start >= m.end);
        if free && m.start < m.end {
            kept.insert(m.start, m);
        }
    }
    kept.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds and texts found in `text`.
    fn check(text: &str) -> Vec<(String, String)> {
        detect(text, &Detectors::default())
            .into_iter()
            .map(|m| (m.label, text[m.start..m.end].to_owned()))
            .collect()
    }

    fn found(kind: &str, text: &str, value: &str) {
        let got = check(text);
        assert!(
            got.iter().any(|(k, v)| k == kind && v == value),
            "{kind} {value:?} not found in {text:?}: {got:?}"
        );
    }

    fn not_found(kind: &str, text: &str) {
        let got = check(text);
        assert!(
            !got.iter().any(|(k, _)| k == kind),
            "{kind} wrongly found in {text:?}: {got:?}"
        );
    }

    #[test]
    fn emails() {
        found(
            "email",
            "write to jane.doe+audit@example.co.uk today",
            "jane.doe+audit@example.co.uk",
        );
        found("email", "<BOB@EXAMPLE.COM>", "BOB@EXAMPLE.COM");
        not_found("email", "the @mention and user@localhost are not addresses");
        not_found("email", "version 1.2@3");
    }

    #[test]
    fn phones() {
        found("phone", "call +14155552671 now", "+14155552671");
        found("phone", "call +44 20 7946 0958 now", "+44 20 7946 0958");
        found("phone", "US (415) 555-2671 office", "(415) 555-2671");
        found("phone", "US 415-555-2671 office", "415-555-2671");
        found("phone", "Paris 01 42 68 53 00", "01 42 68 53 00");
        not_found("phone", "order 20261125 shipped");
        not_found("phone", "+12 is not a number");
    }

    #[test]
    fn cards_need_luhn_and_an_issuer() {
        found(
            "card",
            "card 4111 1111 1111 1111 exp 12/29",
            "4111 1111 1111 1111",
        );
        found("card", "amex 378282246310005.", "378282246310005");
        found("card", "mc 5555-5555-5555-4444", "5555-5555-5555-4444");
        // 16 digits, fails Luhn: an order number.
        not_found("card", "order 4111111111111112 shipped");
        // Passes Luhn but no card network starts with 1.
        not_found("card", "ref 1234567812345670");
    }

    #[test]
    fn ibans_need_mod_97() {
        found(
            "iban",
            "pay DE89 3704 0044 0532 0130 00 please",
            "DE89 3704 0044 0532 0130 00",
        );
        found("iban", "GB82WEST12345698765432", "GB82WEST12345698765432");
        not_found("iban", "GB82WEST12345698765433");
        not_found("iban", "DE89 3704 0044 0532 0130 01");
    }

    #[test]
    fn ssns() {
        found("ssn", "ssn 123-45-6789.", "123-45-6789");
        not_found(
            "ssn",
            "000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000",
        );
    }

    #[test]
    fn ip_addresses() {
        found("ip", "from 192.168.1.20 via", "192.168.1.20");
        found(
            "ip",
            "v6 2001:db8::8a2e:370:7334 ok",
            "2001:db8::8a2e:370:7334",
        );
        found("ip", "loopback ::1", "::1");
        not_found("ip", "version 1.2.3.999 and 300.1.1.1");
        not_found("ip", "time 12:30:45 and a:b");
    }

    #[test]
    fn secrets() {
        found(
            "secret",
            "aws AKIAIOSFODNN7EXAMPLE key",
            "AKIAIOSFODNN7EXAMPLE",
        );
        found(
            "secret",
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 x",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        );
        found(
            "secret",
            "key sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        );
        found(
            "secret",
            "openai sk-proj-abcdefghijklmnopqrstuvwx",
            "sk-proj-abcdefghijklmnopqrstuvwx",
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        found("secret", &format!("Authorization: Bearer {jwt}"), jwt);
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----";
        found("secret", &format!("key:\n{pem}\nend"), pem);
        not_found("secret", "the skeleton key sk-short and AKIA123");
    }

    /// The misses of issue 14 that left plaintext in the index.
    #[test]
    fn values_that_used_to_slip_through() {
        let hex = "0123456789abcdef0123456789abcdef";
        found("secret", &format!("api_key={hex}"), hex);
        let aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        found("secret", &format!("AWS_SECRET_ACCESS_KEY={aws}"), aws);
        found("secret", &format!("secret access key: {aws}"), aws);
        found(
            "secret",
            "Bearer 7f3a9c2e1b8d4f6a0e5c",
            "7f3a9c2e1b8d4f6a0e5c",
        );
        found("secret", "password: hunter2", "hunter2");
        found(
            "card",
            "card 4242 4242 4242 4242 123",
            "4242 4242 4242 4242",
        );
        found("card", "qty 2 4000056655665556", "4000056655665556");
        found("card", "4111.1111.1111.1111", "4111.1111.1111.1111");
        found("iban", "de89370400440532013000", "de89370400440532013000");
        found("email", "jörg@müller.de", "jörg@müller.de");
        found("email", "jane(at)example.com", "jane(at)example.com");
        found(
            "email",
            "jane [at] example [dot] com",
            "jane [at] example [dot] com",
        );
        found(
            "email",
            "jane at example dot com",
            "jane at example dot com",
        );
        not_found("secret", "password: ");
        not_found(
            "secret",
            "token=null password=<redacted> api_key=${API_KEY}",
        );
    }

    #[test]
    fn overlaps_resolve_to_one_match_and_custom_detectors_add() {
        // An email whose local part looks like a phone number is one email.
        assert_eq!(
            check("4155552671@example.com"),
            vec![("email".to_owned(), "4155552671@example.com".to_owned())]
        );
        let d = Detectors {
            enabled: vec![Kind::Email],
            custom: vec![("employee_id".into(), Regex::new(r"\bEMP-\d{6}\b").unwrap())],
        };
        let text = "EMP-004211 mailed x@example.org from 10.0.0.1";
        let got: Vec<String> = detect(text, &d).iter().map(|m| m.label.clone()).collect();
        assert_eq!(got, vec!["employee_id", "email"], "ip is off");
    }
}
