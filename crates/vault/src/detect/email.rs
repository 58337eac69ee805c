//! Email addresses, internationalised (`jörg@müller.de`, `用户@例子.广告`) and obfuscated
//! (`jane(at)example.com`, `jane [at] example [dot] com`, `jane at example dot com`). The whole
//! written form is the match, so the token replaces all of it.

/// A local part: letters, marks and digits of any script and `._%+-`, not starting or ending
/// with a dot.
const LOCAL: &str = r"[\p{L}\p{N}_%+-](?:[\p{L}\p{M}\p{N}._%+-]*[\p{L}\p{M}\p{N}_%+-])?";
/// One domain label.
const LABEL: &str = r"[\p{L}\p{N}](?:[\p{L}\p{M}\p{N}-]*[\p{L}\p{M}\p{N}])?";
/// A top-level domain: letters (any script), or an A-label (`xn--p1ai`).
const TLD: &str = r"(?:(?i:xn--[a-z0-9-]{2,59})|\p{L}[\p{L}\p{M}]{1,62})";

/// `local@label.label.tld`.
pub(super) fn plain() -> String {
    format!("{LOCAL}@(?:{LABEL}\\.)+{TLD}")
}

/// `local (at) domain`, with `(at)`, `[at]` or `{at}`, the domain's dots written as `.` or
/// `(dot)`/`[dot]`/`{dot}`; or `local at label dot tld` with both words spelled out (a bare
/// ` at ` before a dotted domain is prose: "I work at example.com").
pub(super) fn obfuscated() -> String {
    let at = r"[ \t]*(?i:\([ \t]*at[ \t]*\)|\[[ \t]*at[ \t]*\]|\{[ \t]*at[ \t]*\})[ \t]*";
    let dot =
        r"(?:\.|[ \t]*(?i:\([ \t]*dot[ \t]*\)|\[[ \t]*dot[ \t]*\]|\{[ \t]*dot[ \t]*\})[ \t]*)";
    let spelled = r"[ \t]+(?i:at)[ \t]+";
    let spelled_dot = r"[ \t]+(?i:dot)[ \t]+";
    format!("{LOCAL}(?:{at}(?:{LABEL}{dot})+|{spelled}(?:{LABEL}{spelled_dot})+){TLD}")
}

/// The words an obfuscated address needs: one cheap test tells whether to look for one.
pub(super) const OBFUSCATED_TRIGGER: &str = r"(?i-u)[(\[{][ \t]*at[ \t]*[)\]}]|[ \t]dot[ \t]";

/// Whether a match ends where the address does (not inside a longer word: `a@b.comX`).
pub(super) fn ends_cleanly(text: &str, end: usize) -> bool {
    text[end..]
        .chars()
        .next()
        .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '@'))
}

/// File extensions that are no top-level domain: `sprite@2x.png` is an asset name.
const NOT_TLDS: [&str; 12] = [
    "png", "jpg", "jpeg", "gif", "svg", "webp", "css", "js", "json", "txt", "yaml", "yml",
];

/// A plain address: it ends where the address does, its TLD is no file extension, and it is
/// not the user part of a URL (`https://user@example.com/`) nor of an SSH or scp target
/// (`git@github.com:acme/repo.git`: a colon with no blank after it).
pub(super) fn plain_ok(text: &str, start: usize, end: usize) -> bool {
    let tld = text[..end].rsplit('.').next().unwrap_or_default();
    let rest = &text[end..];
    let host_path =
        rest.starts_with(':') && rest[1..].chars().next().is_some_and(|c| !c.is_whitespace());
    ends_cleanly(text, end)
        && !host_path
        && !NOT_TLDS.iter().any(|t| t.eq_ignore_ascii_case(tld))
        && !text[..start].ends_with("://")
}
