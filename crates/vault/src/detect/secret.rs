//! Secrets: the rules of gitleaks (vendored as data in `src/rules/gitleaks.toml`), a few fixed
//! provider patterns, and what no provider rule knows: values given to a secret-sounding key
//! (`password: …`, `"api_key": "…"`), `Bearer`/`Basic` credentials and AWS secret access keys
//! named by their context. Where a rule has a capture group, the value is the match, not the key
//! name or the header around it.

use regex::{Captures, Regex};
use serde::Deserialize;
use std::sync::OnceLock;

/// Fixed provider patterns kept from before the gitleaks rules: they are tested on their own and
/// some are wider than the upstream rules (a short PEM body, any `sk-` key).
pub(super) const FIXED: [&str; 9] = [
    r"(?-u:\b)AKIA[0-9A-Z]{16}(?-u:\b)",
    r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,}(?-u:\b)",
    r"(?-u:\b)github_pat_[A-Za-z0-9_]{40,}(?-u:\b)",
    r"(?-u:\b)xox[abposr]-[A-Za-z0-9-]{10,}(?-u:\b)",
    r"(?-u:\b)[rs]k_(?:live|test)_[A-Za-z0-9]{16,}(?-u:\b)",
    r"(?-u:\b)sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}",
    r"(?-u:\b)AIza[0-9A-Za-z_-]{35}(?-u:\b)",
    r"(?-u:\b)eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )?PRIVATE KEY-----",
];

/// What each of [`FIXED`] starts with.
pub(super) const FIXED_TRIGGER: &str =
    "AKIA|gh[pousr]_|github_pat_|xox|k_live_|k_test_|sk-|AIza|eyJ|-----BEGIN";

/// `<name> = <value>` where the name ends in a secret-sounding word: `password`, `db_password`,
/// `AWS_SECRET_ACCESS_KEY`, `"api_key"`, `stripeApiKey`, `X-Api-Key`, `client_secret`, also
/// inside escaped JSON (`{\"password\": \"…\"}`), in prose (`my password is hunter2`) and as a
/// command-line flag (`--password hunter2`). The name must end there (`max_tokens: 512` and
/// `password_hint: x` are not secrets). Group 1 is the name's last word; group 2 is set when the
/// separator is `is`/`was`, group 3 when it is only blanks; group 4 is a double-quoted value, 5
/// a single-quoted one, 6 a bare one.
pub(super) const KEY_VALUE: &str = concat!(
    r#"(?i)(?-u:\b)[a-z0-9_.-]{0,40}?"#,
    r#"(api[_-]?key|apikey|api[_-]?token|secret[_-]?access[_-]?key|access[_-]?key[_-]?secret"#,
    r#"|secret[_-]?key|private[_-]?key|client[_-]?secret|app[_-]?secret|secret"#,
    r#"|access[_-]?token|refresh[_-]?token|auth[_-]?token|session[_-]?token|id[_-]?token"#,
    r#"|token|password|passwd|passphrase|pwd)(?-u:\b)"#,
    r#"(?:(?:\\?["'])?[ \t]*(?:=|:=|:|=>)[ \t]*|[ \t]+((?:is|was)[ \t]+)|([ \t]+))"#,
    r#"(?:\\?"([^"\\\r\n]{1,200})\\?"|'([^'\r\n]{1,200})'|([^\s"'`,;<>(){}\[\]\\]{1,200}))"#,
);

/// `Bearer <token>`, in a header or not. Group 1 is the token.
pub(super) const BEARER: &str = r"(?i)(?-u:\b)bearer[ \t]+([A-Za-z0-9._~+/-]+=*)";

/// `Basic <base64 of user:password>`. Group 1 is the base64.
pub(super) const BASIC: &str = r"(?i)(?-u:\b)basic[ \t]+([A-Za-z0-9+/]{6,}={0,2})";

/// An AWS secret access key (40 characters of base64) after a name for it:
/// `aws_secret_access_key = …`, `AWS_SECRET_ACCESS_KEY=…`, `secret access key: …`. Group 1.
pub(super) const AWS_SECRET: &str = concat!(
    r#"(?i)secret[_ .-]?access[_ .-]?key["']?[ \t]*(?:=|:|=>|is)?[ \t]*["']?"#,
    r#"([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
);

/// `scheme://user:password@host`: group 1 is the password.
pub(super) const URL_CREDENTIALS: &str =
    r"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,20}://[^\s:/@?#]{1,100}:([^\s/@?#]{1,200})@[^\s@]";

/// The words a key=value, bearer or AWS-context secret must contain: one cheap pass over text
/// tells whether those rules need to run.
pub(super) const CONTEXT_TRIGGER: &str = r"(?i)key|secret|token|passw|pwd|passphrase|bearer|basic";

/// Which family a key name is: passwords may be short words, tokens and keys may not.
fn is_password_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("pass") || n == "pwd"
}

/// A value that stands for no secret: empty-likes, placeholders, masks, template and
/// environment references, and values the vault has already replaced by a token.
fn is_placeholder(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    let masked = |c: char| matches!(c, '*' | 'x' | 'X' | '•' | '.' | '#' | '-' | '_');
    matches!(
        l.as_str(),
        "null"
            | "none"
            | "nil"
            | "true"
            | "false"
            | "undefined"
            | "empty"
            | "redacted"
            | "[redacted]"
            | "(redacted)"
            | "<redacted>"
            | "hidden"
            | "secret"
            | "password"
            | "token"
            | "required"
            | "optional"
            | "string"
            | "str"
            | "env"
            | "value"
            | "your_password"
            | "your_token"
            | "your_api_key"
            | "your-api-key"
            | "changeme"
            | "placeholder"
    ) || v.chars().all(masked)
        || v.starts_with('$')
        || v.starts_with('/') && v[1..].contains('/')
        || v.starts_with("~/")
        || v.starts_with("%") && v.ends_with('%')
        || v.starts_with("{{")
        || v.starts_with('<') && v.ends_with('>')
        || v.starts_with("tok_")
        || l.starts_with("os.environ")
        || l.starts_with("process.env")
        || l.starts_with("env.")
        || l.starts_with("env(")
        || l.starts_with("secrets.")
}

/// Whether `v` given to the key `name` is a secret worth hiding.
pub(super) fn key_value_ok(name: &str, v: &str) -> bool {
    if v.trim().is_empty() || is_placeholder(v.trim()) {
        return false;
    }
    if is_password_name(name) {
        return v.chars().count() >= 3;
    }
    // Tokens and keys: long, and not a word (`secret: classified`, `token: expired`).
    let has_digit = v.bytes().any(|b| b.is_ascii_digit());
    v.len() >= 8 && !v.contains(' ') && (has_digit || v.len() >= 16)
}

/// The value span of a key=value match in `text`, trailing sentence punctuation cut off a bare
/// value. A bare value that reads as prose or code is no value: `Password: must contain 8
/// characters` (a word followed by more words), `password = getpass()` (a call),
/// `token = self.token` (a dotted name).
pub(super) fn key_value_span(text: &str, c: &Captures) -> Option<(usize, usize)> {
    let name = c.get(1)?;
    let v = c.get(4).or_else(|| c.get(5)).or_else(|| c.get(6))?;
    // Blanks alone separate a value only after a command-line flag (`--password x`); `is`
    // only a value that is no plain word (`the password is required`).
    let flag = text[..c.get(0)?.start()].ends_with("--") || text[..name.start()].ends_with("--");
    if c.get(3).is_some() && (!flag || v.as_str().starts_with(['-', '$'])) {
        return None;
    }
    if c.get(2).is_some()
        && v.as_str()
            .trim_end_matches(['.', ',', '!', '?'])
            .chars()
            .all(char::is_alphabetic)
    {
        return None;
    }
    let name = name.as_str();
    let mut s = v.as_str();
    if c.get(6).is_some() {
        // In a query string or form (`api_key=…&page=2`) the value ends at the `&` that starts
        // the next pair; a `&` inside a password (`Tr0ub4dor&3x`) stays.
        let next_pair = s.match_indices('&').map(|(i, _)| i).find(|&i| {
            let rest = &s[i + 1..];
            let name = rest.find('=').map_or("", |e| &rest[..e]);
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-[]".contains(&b))
        });
        if let Some(i) = next_pair {
            s = &s[..i];
        }
        s = s.trim_end_matches(['.', '!', '?', ':']);
        let next = text[v.end()..].chars().next();
        let word = s.chars().all(char::is_alphabetic);
        let prose = word
            && text[v.end()..].starts_with(' ')
            && text[v.end() + 1..]
                .chars()
                .next()
                .is_some_and(char::is_alphabetic);
        let call = matches!(next, Some('(' | '['));
        let dotted = s.contains('.')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
        if prose || call || dotted {
            return None;
        }
    }
    key_value_ok(name, s).then(|| (v.start(), v.start() + s.len()))
}

/// A bearer token: opaque tokens have digits or are long; `Bearer authentication` is prose.
pub(super) fn bearer_ok(t: &str) -> bool {
    let has_digit = t.bytes().any(|b| b.is_ascii_digit());
    t.len() >= 8 && !is_placeholder(t) && (has_digit || t.len() >= 20)
}

/// `Basic` credentials decode to `user:password`.
pub(super) fn basic_ok(b64: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .is_some_and(|s| {
            s.split_once(':').is_some_and(|(u, p)| {
                !u.is_empty() && !p.is_empty() && !s.contains(char::is_control)
            })
        })
}

/// The gitleaks rules file as vendored.
const GITLEAKS: &str = include_str!("../rules/gitleaks.toml");

#[derive(Debug, Deserialize)]
struct RuleFile {
    rules: Vec<RuleDef>,
}

#[derive(Debug, Deserialize)]
struct RuleDef {
    id: String,
    regex: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    entropy: f64,
    #[serde(default, rename = "secretGroup")]
    secret_group: usize,
    #[serde(default)]
    allowlists: Vec<AllowDef>,
}

#[derive(Debug, Deserialize)]
struct AllowDef {
    regexes: Vec<String>,
}

/// One vendored rule, its regex compiled on first use: most text never names most providers.
#[derive(Debug)]
pub(super) struct Rule {
    /// The upstream rule id, for messages and tests.
    id: String,
    source: String,
    pub(super) keywords: Vec<String>,
    entropy: f64,
    secret_group: usize,
    allow: Vec<String>,
    compiled: OnceLock<Option<(Regex, Vec<Regex>)>>,
}

/// The vendored gitleaks rules, parsed once. The file is part of the binary and tested: a parse
/// failure is a bug any test catches.
pub(super) fn gitleaks() -> &'static [Rule] {
    static R: OnceLock<Vec<Rule>> = OnceLock::new();
    R.get_or_init(|| {
        let file: RuleFile =
            toml::from_str(GITLEAKS).unwrap_or_else(|e| panic!("rules/gitleaks.toml: {e}"));
        file.rules
            .into_iter()
            .map(|r| Rule {
                id: r.id,
                source: go_to_rust(&r.regex),
                keywords: r.keywords,
                entropy: r.entropy,
                secret_group: r.secret_group,
                allow: r
                    .allowlists
                    .into_iter()
                    .flat_map(|a| a.regexes)
                    .map(|s| go_to_rust(&s))
                    .collect(),
                compiled: OnceLock::new(),
            })
            .collect()
    })
}

impl Rule {
    /// The compiled regex and allowlist; `None` if the regex does not compile (a unit test
    /// checks that every vendored rule does).
    fn compiled(&self) -> Option<&(Regex, Vec<Regex>)> {
        self.compiled
            .get_or_init(|| {
                let re = Regex::new(&self.source);
                debug_assert!(re.is_ok(), "gitleaks rule {} does not compile", self.id);
                let re = re.ok()?;
                let allow = self
                    .allow
                    .iter()
                    .map(|a| Regex::new(a))
                    .collect::<Result<Vec<_>, _>>()
                    .ok()?;
                Some((re, allow))
            })
            .as_ref()
    }

    /// Every secret this rule finds in `text`, as byte ranges: gitleaks' semantics, the
    /// `secretGroup` or else the first non-empty group or else the whole match, kept when its
    /// Shannon entropy is above the rule's and no allowlist regex matches it.
    pub(super) fn find(&self, text: &str, out: &mut Vec<(usize, usize)>) {
        let Some((re, allow)) = self.compiled() else {
            return;
        };
        for c in re.captures_iter(text) {
            let m = if self.secret_group > 0 {
                c.get(self.secret_group)
            } else {
                c.iter().skip(1).flatten().find(|g| !g.is_empty())
            };
            let Some(m) = m.or_else(|| c.get(0)) else {
                continue;
            };
            let s = m.as_str();
            if s.is_empty()
                || (self.entropy > 0.0 && shannon_entropy(s) <= self.entropy)
                || allow.iter().any(|a| a.is_match(s))
            {
                continue;
            }
            out.push((m.start(), m.end()));
        }
    }

    #[cfg(test)]
    pub(super) fn compiles(&self) -> Result<(), String> {
        Regex::new(&self.source).map_err(|e| e.to_string())?;
        for a in &self.allow {
            Regex::new(a).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Which gitleaks rules' keywords occur in a text. One literal alternation of every keyword
/// (the regex crate runs it as Aho-Corasick) over the lower-cased text finds where a keyword
/// starts; all keywords starting there are then read off, so overlapping keywords (`xoxe.xoxb-`
/// and `xoxb`) are all seen.
#[derive(Debug)]
pub(super) struct Keywords {
    any: Regex,
    /// Distinct lower-case keywords and, for each, the rules that name it.
    words: Vec<(String, Vec<usize>)>,
    /// Indices into `words` by first byte.
    by_first: Vec<Vec<usize>>,
}

impl Keywords {
    pub(super) fn new(rules: &[Rule]) -> Keywords {
        let mut words: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            for k in &r.keywords {
                let k = k.to_ascii_lowercase();
                match words.iter_mut().find(|(w, _)| *w == k) {
                    Some((_, rs)) => rs.push(i),
                    None => words.push((k, vec![i])),
                }
            }
        }
        let mut by_first = vec![Vec::new(); 256];
        for (i, (w, _)) in words.iter().enumerate() {
            if let Some(&b) = w.as_bytes().first() {
                by_first[usize::from(b)].push(i);
            }
        }
        let alternation: Vec<String> = words.iter().map(|(w, _)| regex::escape(w)).collect();
        // Fixed literals; a failure to compile is a bug any test catches.
        let any =
            Regex::new(&alternation.join("|")).unwrap_or_else(|e| panic!("gitleaks keywords: {e}"));
        Keywords {
            any,
            words,
            by_first,
        }
    }

    /// A pattern that matches where any keyword occurs, ASCII case-insensitive: the one-pass
    /// prefilter holds it, and [`Keywords::rules_in`] runs only where it matched.
    pub(super) fn trigger(&self) -> String {
        format!("(?i-u){}", self.any.as_str())
    }

    /// The rules (indices into [`gitleaks`]) whose keywords occur in `text`, sorted.
    pub(super) fn rules_in(&self, text: &str) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        let lower = text.to_ascii_lowercase();
        let mut at = 0;
        while let Some(m) = self.any.find_at(&lower, at) {
            let rest = &lower.as_bytes()[m.start()..];
            for &w in &self.by_first[usize::from(rest[0])] {
                let (word, rules) = &self.words[w];
                if rest.starts_with(word.as_bytes()) {
                    out.extend(rules);
                }
            }
            // The next keyword may start inside this one; `find_at` needs a char boundary.
            at = m.start() + 1;
            while !lower.is_char_boundary(at) {
                at += 1;
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Shannon entropy in bits per character, as gitleaks computes it (characters counted, divided
/// by the length in bytes).
fn shannon_entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::<char, usize>::new();
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let len = s.len() as f64;
    counts
        .values()
        .map(|&n| {
            let f = n as f64 / len;
            -f * f.log2()
        })
        .sum()
}

/// Go's RE2 reads `\w \d \s \b` as ASCII; the regex crate as Unicode. Rewrites them to their
/// ASCII meaning (which also keeps the lazy DFA from giving up on non-ASCII text), inside and
/// outside character classes. Everything else passes through.
pub(super) fn go_to_rust(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 16);
    let mut in_class = false;
    let mut class_start = false;
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        let first_in_class = class_start;
        class_start = false;
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let ascii = match (e, in_class) {
                    ('w', false) => "[0-9A-Za-z_]",
                    ('w', true) => "0-9A-Za-z_",
                    ('d', false) => "[0-9]",
                    ('d', true) => "0-9",
                    ('s', false) => r"[\t\n\f\r ]",
                    ('s', true) => r"\t\n\f\r ",
                    ('W', false) => "[^0-9A-Za-z_]",
                    ('D', false) => "[^0-9]",
                    ('S', false) => r"[^\t\n\f\r ]",
                    ('b', false) => r"(?-u:\b)",
                    ('B', false) => r"(?-u:\B)",
                    _ => {
                        out.push('\\');
                        out.push(e);
                        continue;
                    }
                };
                out.push_str(ascii);
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as [:alnum:], copied whole.
                out.push('[');
                for x in chars.by_ref() {
                    out.push(x);
                    if x == ']' {
                        break;
                    }
                }
            }
            '{' if !in_class => {
                // A repetition `{n}`, `{n,}`, `{n,m}` is copied; any other brace is a literal
                // in RE2 and an error in the regex crate, so it is escaped.
                let rest: String = chars.clone().take_while(|&x| x != '}').collect();
                let closed = chars.clone().nth(rest.len()) == Some('}');
                let (lo, hi) = rest.split_once(',').unwrap_or((&rest, "0"));
                let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
                if closed && !lo.is_empty() && digits(lo) && digits(hi) {
                    out.push('{');
                    out.push_str(&rest);
                    out.push('}');
                    chars.nth(rest.len());
                } else {
                    out.push_str(r"\{");
                }
            }
            '}' if !in_class => out.push_str(r"\}"),
            ']' if in_class && !first_in_class => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendored_rule_compiles() {
        let rules = gitleaks();
        assert!(rules.len() > 200, "{}", rules.len());
        let failed: Vec<String> = rules
            .iter()
            .filter_map(|r| r.compiles().err().map(|e| format!("{}: {e}", r.id)))
            .collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(
            rules.iter().all(|r| !r.keywords.is_empty()),
            "keywords prefilter every rule"
        );
    }

    #[test]
    fn go_classes_become_ascii() {
        assert_eq!(go_to_rust(r"\w+"), "[0-9A-Za-z_]+");
        assert_eq!(go_to_rust(r"[\w.-]\b"), r"[0-9A-Za-z_.-](?-u:\b)");
        assert_eq!(
            go_to_rust(r"[^]\d]\.[[:alnum:]\s]"),
            r"[^]0-9]\.[[:alnum:]\t\n\f\r ]"
        );
        assert_eq!(go_to_rust(r"a{2,}b{3}c{1,4}"), r"a{2,}b{3}c{1,4}");
        assert_eq!(go_to_rust(r"{{[^}]+}}"), r"\{\{[^}]+\}\}");
    }

    #[test]
    fn entropy_as_gitleaks() {
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }
}
