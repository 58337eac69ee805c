//! PII and secret detectors (DESIGN.md §4): emails, phone numbers (E.164 and common national
//! formats), payment cards (Luhn), IBANs (mod 97), US SSNs, IPv4/IPv6 addresses, and secrets (API
//! keys of common providers, JWTs, private key blocks). Each detector is a regular expression for
//! candidates plus a check that throws out look-alikes (a 16-digit order number that fails Luhn is
//! not a card). Matches never overlap: at a position the earliest-starting, then longest, then
//! highest-priority match wins.

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

struct Patterns {
    /// Every built-in pattern, to find in one pass which detectors need to run at all.
    any: regex::RegexSet,
    email: Regex,
    phone: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
    secrets: Vec<Regex>,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        // These literals are fixed and tested; a failure to compile is a bug caught by any test.
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| panic!("detector regex {s}: {e}"));
        let mut p = Patterns {
            any: regex::RegexSet::empty(),
            email: re(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b"),
            phone: re(
                r"(?:\+[1-9]\d{0,2}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){1,4}\d{2,4}|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b|\b0\d{1,4}[ -]\d{3,4}[ -]?\d{3,4}\b|\b0\d(?:[ .-]\d{2}){4}\b)",
            ),
            card: re(r"\b(?:\d[ -]?){12,18}\d\b"),
            iban: re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
            ssn: re(r"\b\d{3}-\d{2}-\d{4}\b"),
            ipv4: re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
            ipv6: re(r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}"),
            secrets: vec![
                re(r"\bAKIA[0-9A-Z]{16}\b"),
                re(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
                re(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b"),
                re(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
                re(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
                re(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"),
                re(r"\bAIza[0-9A-Za-z_-]{35}\b"),
                re(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"),
                re(
                    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )?PRIVATE KEY-----",
                ),
            ],
        };
        let mut all: Vec<&str> = [&p.email, &p.phone, &p.card, &p.iban, &p.ssn, &p.ipv4, &p.ipv6]
            .iter()
            .map(|r| r.as_str())
            .collect();
        all.extend(p.secrets.iter().map(Regex::as_str));
        p.any = regex::RegexSet::new(all).unwrap_or_else(|e| panic!("detector set: {e}"));
        p
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

fn is_card(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || !luhn(&d) {
        return false;
    }
    // Issuer prefixes of the major networks: Visa, Mastercard, Amex, Discover/UnionPay, JCB, Diners.
    matches!(
        (d[0], d[1]),
        (4, _)
            | (5, 1..=5)
            | (2, 2..=7)
            | (3, 4)
            | (3, 7)
            | (6, _)
            | (3, 5)
            | (3, 0)
            | (3, 6)
            | (3, 8)
    )
}

/// ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1.
pub fn iban_ok(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&c.len()) {
        return false;
    }
    let mut r = 0u32;
    for &b in c[4..].iter().chain(&c[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    r == 1
}

fn ssn_ok(s: &str) -> bool {
    let area = &s[0..3];
    let group = &s[4..6];
    let serial = &s[7..11];
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

fn ipv4_ok(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

fn ipv6_ok(s: &str) -> bool {
    s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok()
}

fn phone_ok(s: &str) -> bool {
    let n = digits(s).len();
    (7..=15).contains(&n)
}

/// Every match in `text`, non-overlapping, in order.
pub fn detect(text: &str, d: &Detectors) -> Vec<Match> {
    let p = patterns();
    let mut all: Vec<Match> = Vec::new();
    // Most text holds nothing: one pass over it answers that for every built-in detector.
    if d.custom.is_empty() && !p.any.is_match(text) {
        return all;
    }
    let on = |k: Kind| d.enabled.contains(&k);
    let mut push = |kind: Kind, re: &Regex, ok: &dyn Fn(&str) -> bool| {
        for m in re.find_iter(text) {
            if ok(m.as_str()) {
                all.push(Match {
                    kind,
                    label: kind.name().into(),
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    };
    if on(Kind::Secret) {
        for re in &p.secrets {
            push(Kind::Secret, re, &|_| true);
        }
    }
    if on(Kind::Email) {
        push(Kind::Email, &p.email, &|_| true);
    }
    if on(Kind::Iban) {
        push(Kind::Iban, &p.iban, &iban_ok);
    }
    if on(Kind::Card) {
        push(Kind::Card, &p.card, &is_card);
    }
    if on(Kind::Ssn) {
        push(Kind::Ssn, &p.ssn, &ssn_ok);
    }
    if on(Kind::Ip) {
        push(Kind::Ip, &p.ipv4, &ipv4_ok);
        push(Kind::Ip, &p.ipv6, &ipv6_ok);
    }
    if on(Kind::Phone) {
        push(Kind::Phone, &p.phone, &phone_ok);
    }
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
    // Earliest start, then longest, then the kind listed first.
    all.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.kind.cmp(&b.kind))
    });
    let mut out: Vec<Match> = Vec::new();
    for m in all {
        if out.last().is_none_or(|l| m.start >= l.end) {
            out.push(m);
        }
    }
    out
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
