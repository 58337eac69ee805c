//! Payment cards. A card hides in a run of digit groups (`qty 2 4000056655665556`, `4242 4242
//! 4242 4242 123` with its CVV, `4111.1111.1111.1111`), so every run is searched for the card
//! numbers inside it, not taken whole: each sub-run of whole groups with 13–19 digits is a
//! candidate if it is shaped like a written card number (at most five groups, every group but
//! the last of four digits or more), passes Luhn and has a network's prefix and length. The
//! longest candidates win, then the earliest, without overlapping. A single unbroken run of
//! digits is taken whole: inside a 20-digit id some 16 digits pass Luhn by chance.

use super::luhn;

/// A maximal run of ASCII digit groups joined by one space, dash or dot.
pub(super) const RUN: &str = r"(?-u:\b)[0-9]+(?:[ .\-][0-9]+)*(?-u:\b)";

/// What every card contains: 13 digits with at most one separator between two of them.
pub(super) const TRIGGER: &str = r"[0-9](?:[ .\-]?[0-9]){12}";

/// Issuer prefixes and lengths of the major networks: Visa, Mastercard (51–55 and 2221–2720),
/// American Express, Diners Club, JCB, and Discover/UnionPay/Maestro (6).
fn network_ok(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| d[..k].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    match d[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => (51..=55).contains(&prefix(2)) && n == 16,
        2 => (2221..=2720).contains(&prefix(4)) && n == 16,
        3 => match prefix(2) {
            34 | 37 => n == 15,
            35 => (3528..=3589).contains(&prefix(4)) && n >= 16,
            30 | 36 | 38 | 39 => n >= 14,
            _ => false,
        },
        6 => n >= 16,
        _ => false,
    }
}

/// Whether these 13–19 digits are a card number.
pub(super) fn digits_are_card(d: &[u8]) -> bool {
    (13..=19).contains(&d.len()) && network_ok(d) && luhn(d)
}

/// The card numbers inside one run (`run` starts at byte `offset` of the text; `after_plus`
/// when a `+` precedes it, as in a phone number), as byte ranges of the text.
pub(super) fn find_in_run(
    run: &str,
    offset: usize,
    after_plus: bool,
    out: &mut Vec<(usize, usize)>,
) {
    // The digit groups: byte ranges within `run`.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, b) in run.bytes().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                groups.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        groups.push((s, run.len()));
    }
    let total: usize = groups.iter().map(|(s, e)| e - s).sum();
    if total < 13 {
        return;
    }
    // Candidates (first group, last group, digit count).
    let mut found: Vec<(usize, usize, usize)> = Vec::new();
    let mut d: Vec<u8> = Vec::with_capacity(19);
    for i in 0..groups.len() {
        if i == 0 && after_plus {
            continue;
        }
        d.clear();
        for (j, &(s, e)) in groups.iter().enumerate().skip(i).take(5) {
            if j > i && groups[j - 1].1 - groups[j - 1].0 < 4 {
                break;
            }
            d.extend(run.as_bytes()[s..e].iter().map(|b| b - b'0'));
            if d.len() > 19 {
                break;
            }
            if digits_are_card(&d) {
                found.push((i, j, d.len()));
            }
        }
    }
    found.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let mut taken: Vec<(usize, usize)> = Vec::new();
    for (i, j, _) in found {
        if taken.iter().all(|&(ti, tj)| j < ti || i > tj) {
            taken.push((i, j));
        }
    }
    taken.sort_unstable();
    for (i, j) in taken {
        out.push((offset + groups[i].0, offset + groups[j].1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(run: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find_in_run(run, 0, false, &mut out);
        out.into_iter().map(|(s, e)| &run[s..e]).collect()
    }

    #[test]
    fn cards_are_found_inside_runs() {
        assert_eq!(check("2 4000056655665556"), ["4000056655665556"]);
        assert_eq!(check("4242 4242 4242 4242 123"), ["4242 4242 4242 4242"]);
        assert_eq!(check("4111.1111.1111.1111"), ["4111.1111.1111.1111"]);
        assert_eq!(
            check("4111111111111111 5555555555554444"),
            ["4111111111111111", "5555555555554444"]
        );
        // A 20-digit id is not searched inside; small numbers do not make a card.
        assert!(check("41111111111111111111").is_empty());
        assert!(check("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1").is_empty());
    }
}
